//! Which commands a script's `execute()` may not send, decided before Redis sees them.
//!
//! Scripts call Redis the way a Lua script does: the host asks `RedisModule_Call` for script
//! mode, so Redis itself refuses every command it flags `noscript` (CLIENT, WAIT, SYNC, PSYNC,
//! MULTI/EXEC, SUBSCRIBE, MONITOR, EVAL, FUNCTION, …), writes on a read-only replica and writes
//! under OOM. This table adds what script mode lets through but a script must not do:
//! gearbox's internal commands (only the master link and loading send them) and blocking
//! variants (a script waiting on the Redis lock for another client's push would freeze the
//! server; Lua turns them into non-blocking calls, gearbox refuses them so the script knows).
//!
//! The texts name the rule; they are the one place these refusals are worded.

/// Why `execute()` refuses `argv`, or None when Redis may decide.
pub fn refusal(argv: &[&[u8]]) -> Option<String> {
    let name = argv.first()?;
    // Cheap first look: every refused name starts with one of these letters.
    if !matches!(name.first().map(u8::to_ascii_lowercase), Some(b'b' | b'r' | b'x')) {
        return None;
    }
    // Compared in place: this runs on every execute() (xadd, rpush… start with these letters).
    let is = |word: &str| name.eq_ignore_ascii_case(word.as_bytes());
    let lower = || String::from_utf8_lossy(name).to_ascii_lowercase();
    if is_internal(name) {
        return Some(format!("ERR '{}' is internal to gearbox and cannot be called from a script", lower()));
    }
    if BLOCKING.iter().any(|b| is(b)) || ((is("xread") || is("xreadgroup")) && has_block_option(argv)) {
        return Some(format!("ERR blocking command '{}' is not allowed from a script", lower()));
    }
    None
}

/// gearbox's own commands that only replication, loading or the command filter may send.
pub fn is_internal(name: &[u8]) -> bool {
    let prefix = b"rg.inner";
    (name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)) || name.eq_ignore_ascii_case(b"rg.pyfreeinterpreter")
}

const BLOCKING: &[&str] = &["blpop", "brpop", "brpoplpush", "blmove", "blmpop", "bzpopmin", "bzpopmax", "bzmpop"];

fn has_block_option(argv: &[&[u8]]) -> bool {
    // Options come before STREAMS; a key or id named "block" after it is not the option.
    argv[1..].iter().take_while(|a| !a.eq_ignore_ascii_case(b"streams")).any(|a| a.eq_ignore_ascii_case(b"block"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(args: &[&str]) -> Option<String> {
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        refusal(&argv)
    }

    #[test]
    fn ordinary_commands_are_left_to_redis() {
        for args in [
            &["GET", "k"][..],
            &["set", "k", "v"],
            &["XREAD", "COUNT", "1", "STREAMS", "block", "0"],
            &["RG.PYEXECUTE", "x"],
            &["bitcount", "k"],
        ] {
            assert_eq!(refused(args), None, "{args:?}");
        }
    }

    #[test]
    fn internal_commands_are_refused_in_any_case() {
        for name in ["RG.INNERREGISTER", "rg.innerunregister", "Rg.InnerHook", "RG.PYFREEINTERPRETER"] {
            let text = refused(&[name, "x"]).expect(name);
            assert!(text.contains("internal to gearbox"), "{text}");
        }
    }

    #[test]
    fn blocking_variants_are_refused() {
        for args in [
            &["BLPOP", "k", "0"][..],
            &["bzpopmin", "k", "1"],
            &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
            &["xreadgroup", "GROUP", "g", "c", "BLOCK", "10", "STREAMS", "s", ">"],
        ] {
            let text = refused(args).expect("refused");
            assert!(text.starts_with("ERR blocking command"), "{text}");
        }
    }
}
