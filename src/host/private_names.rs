//! Key names a script may learn: only those its user's ACL key patterns allow. Redis lets any
//! user with `SCAN`, `KEYS` or `RANDOMKEY` list every key name (those commands are not bound
//! to keys); a tenant's script must not learn another tenant's names that way, so the replies
//! of these commands to a script are filtered here (the KeysOnlyReader walks with `SCAN`).

use gearbox_engine::Value;

/// `reply` to `args` with the key names `may_access` refuses taken out.
pub fn filter(args: &[&[u8]], reply: Value, may_access: impl Fn(&[u8]) -> bool) -> Value {
    let Some(name) = args.first() else { return reply };
    let keep = |names: Vec<Value>| -> Vec<Value> { names.into_iter().filter(|n| !matches!(n, Value::Bulk(k) if !may_access(k))).collect() };
    if name.eq_ignore_ascii_case(b"scan") {
        return match reply {
            Value::Array(mut parts) if parts.len() == 2 => {
                if let Value::Array(names) = parts.pop().unwrap_or(Value::Nil) {
                    parts.push(Value::Array(keep(names)));
                }
                Value::Array(parts)
            }
            other => other,
        };
    }
    if name.eq_ignore_ascii_case(b"keys") {
        return match reply {
            Value::Array(names) => Value::Array(keep(names)),
            other => other,
        };
    }
    if name.eq_ignore_ascii_case(b"randomkey") {
        return match reply {
            Value::Bulk(k) if !may_access(&k) => Value::Nil,
            other => other,
        };
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Value {
        Value::Array(list.iter().map(|n| Value::bulk(*n)).collect())
    }

    fn alice(k: &[u8]) -> bool {
        k.starts_with(b"a:")
    }

    #[test]
    fn scan_keys_and_randomkey_show_only_accessible_names() {
        let scan = Value::Array(vec![Value::bulk("17"), names(&["a:1", "b:1", "a:2"])]);
        assert_eq!(filter(&[b"SCAN", b"0"], scan, alice), Value::Array(vec![Value::bulk("17"), names(&["a:1", "a:2"])]));
        assert_eq!(filter(&[b"keys", b"*"], names(&["b:1", "a:1"]), alice), names(&["a:1"]));
        assert_eq!(filter(&[b"RANDOMKEY"], Value::bulk("b:9"), alice), Value::Nil);
        assert_eq!(filter(&[b"RANDOMKEY"], Value::bulk("a:9"), alice), Value::bulk("a:9"));
    }

    #[test]
    fn other_commands_and_errors_are_untouched() {
        assert_eq!(filter(&[b"GET", b"b:1"], Value::bulk("x"), alice), Value::bulk("x"));
        let err = Value::Error("ERR".into());
        assert_eq!(filter(&[b"SCAN", b"x"], err.clone(), alice), err);
    }
}
