package fakevault

import (
	"strings"
	"time"
	"unicode/utf8"
)

// Key Vault's limits on the tags of one object version. The limits are documented; the error texts are
// inferred.
const (
	maxTags        = 15
	maxTagNameLen  = 512
	maxTagValueLen = 256
)

// validateTags refuses tags the service would refuse (create, import, merge, update).
func validateTags(tags map[string]string) *vaultError {
	if len(tags) > maxTags {
		return errBadParameter("The number of tags (%d) exceeds the maximum of %d.", len(tags), maxTags) // inferred text
	}
	for k, v := range tags {
		if k == "" || utf8.RuneCountInString(k) > maxTagNameLen {
			return errBadParameter("Tag name '%.64s' is invalid: a tag name must have 1 to %d characters.", k, maxTagNameLen) // inferred text
		}
		if utf8.RuneCountInString(v) > maxTagValueLen {
			return errBadParameter("The value of tag '%s' exceeds the maximum length of %d characters.", k, maxTagValueLen) // inferred text
		}
	}
	return nil
}

// SetIssueBackdate makes every certificate the vault issues for name from now on (create operations,
// AutoRenew, Rotate from policy) valid from d earlier than it would be, as an issuer with a clock d behind
// would. Tests use it to get versions that are already past their renewal time when issued. 0 turns it off.
func (s *Server) SetIssueBackdate(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.backdate == nil {
		s.backdate = map[string]time.Duration{}
	}
	if d == 0 {
		delete(s.backdate, strings.ToLower(name))
		return
	}
	s.backdate[strings.ToLower(name)] = d
}

// issueTimeLocked is the time a certificate for name is issued at: now, less any SetIssueBackdate.
func (s *Server) issueTimeLocked(name string, now time.Time) time.Time {
	return now.Add(-s.backdate[strings.ToLower(name)])
}
