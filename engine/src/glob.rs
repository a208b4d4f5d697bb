//! Redis' glob-style key patterns (`SCAN ... MATCH`, `KEYS`): the KeysReader walks the keyspace
//! itself (no `SCAN` reply to build and parse), so it must match keys exactly as Redis would:
//! `*`, `?`, `[abc]`, `[^abc]`, `[a-z]` (a reversed range is swapped), and `\` escaping the next
//! byte, inside a class too. Matching is byte-wise and case-sensitive.

/// Whether `key` matches `pattern` by Redis' rules.
pub fn matches(pattern: &[u8], key: &[u8]) -> bool {
    let mut hopeless = false;
    match_from(pattern, key, &mut hopeless)
}

/// `hopeless` is set once a `*` has tried every suffix of the key: a shorter suffix tried by an
/// outer `*` cannot match either, so the search stops (Redis does the same; it keeps patterns
/// with many stars linear).
fn match_from(mut pattern: &[u8], mut key: &[u8], hopeless: &mut bool) -> bool {
    while let (Some(&p), Some(&k)) = (pattern.first(), key.first()) {
        match p {
            b'*' => {
                while pattern.get(1) == Some(&b'*') {
                    pattern = &pattern[1..];
                }
                let rest = &pattern[1..];
                if rest.is_empty() {
                    return true;
                }
                while !key.is_empty() {
                    if match_from(rest, key, hopeless) {
                        return true;
                    }
                    if *hopeless {
                        return false;
                    }
                    key = &key[1..];
                }
                *hopeless = true;
                return false;
            }
            b'?' => pattern = &pattern[1..],
            b'[' => {
                let (hit, after) = class(&pattern[1..], k);
                if !hit {
                    return false;
                }
                pattern = after;
            }
            b'\\' if pattern.len() >= 2 => {
                if pattern[1] != k {
                    return false;
                }
                pattern = &pattern[2..];
            }
            _ => {
                if p != k {
                    return false;
                }
                pattern = &pattern[1..];
            }
        }
        key = &key[1..];
        if key.is_empty() {
            while pattern.first() == Some(&b'*') {
                pattern = &pattern[1..];
            }
        }
    }
    pattern.is_empty() && key.is_empty()
}

/// A `[...]` class, given the pattern after its `[`: whether `byte` is in it, and the pattern
/// after its `]` (an unterminated class runs to the end of the pattern).
fn class(mut pattern: &[u8], byte: u8) -> (bool, &[u8]) {
    let negated = pattern.first() == Some(&b'^');
    if negated {
        pattern = &pattern[1..];
    }
    let mut hit = false;
    loop {
        match pattern {
            [] => break,
            [b'\\', escaped, rest @ ..] => {
                hit |= *escaped == byte;
                pattern = rest;
            }
            [b']', rest @ ..] => {
                pattern = rest;
                break;
            }
            [from, b'-', to, rest @ ..] => {
                let (low, high) = if from <= to { (*from, *to) } else { (*to, *from) };
                hit |= (low..=high).contains(&byte);
                pattern = rest;
            }
            [single, rest @ ..] => {
                hit |= *single == byte;
                pattern = rest;
            }
        }
    }
    (hit != negated, pattern)
}

#[cfg(test)]
mod tests {
    use super::matches;

    fn m(pattern: &str, key: &str) -> bool {
        matches(pattern.as_bytes(), key.as_bytes())
    }

    #[test]
    fn literals_and_wildcards() {
        assert!(m("user:1", "user:1"));
        assert!(!m("user:1", "user:10"));
        assert!(m("user:*", "user:10"));
        assert!(m("user:*", "user:"));
        assert!(!m("user:*", "users"));
        assert!(m("*:name", "user:1:name"));
        assert!(m("a*b*c", "aXXbYYc"));
        assert!(!m("a*b*c", "aXXbYY"));
        assert!(m("h?llo", "hello"));
        assert!(!m("h?llo", "hllo"));
        assert!(m("**x", "abx"));
        assert!(m("x**", "x"));
    }

    #[test]
    fn classes_ranges_and_negation() {
        assert!(m("h[ae]llo", "hallo"));
        assert!(!m("h[ae]llo", "hillo"));
        assert!(m("h[^e]llo", "hallo"));
        assert!(!m("h[^e]llo", "hello"));
        assert!(m("k[a-c]", "kb"));
        assert!(m("k[c-a]", "kb"), "a reversed range is swapped");
        assert!(!m("k[a-c]", "kd"));
        assert!(m("k[\\]]", "k]"));
        assert!(m("k[ab", "kb"), "an unterminated class ends with the pattern");
        assert!(!m("k[ab", "kbc"));
    }

    #[test]
    fn escapes() {
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("a\\?", "a?"));
        assert!(m("a\\", "a\\"), "a trailing backslash is literal");
    }

    #[test]
    fn empty_key_matches_only_an_empty_pattern_as_in_redis() {
        assert!(!m("*", ""));
        assert!(m("", ""));
        assert!(!m("", "a"));
    }

    #[test]
    fn many_stars_stay_fast() {
        let key = "a".repeat(64);
        let pattern = format!("{}b", "a*".repeat(30));
        assert!(!m(&pattern, &key));
    }
}
