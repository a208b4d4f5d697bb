//! RG.CONFIGGET and RG.CONFIGSET: one reply element per key, errors as elements (spec §1.1).

use gearbox_engine::Value;

use super::{text, Reply};
use crate::config::{ConfigValue, SetOutcome};
use crate::gearbox;
use crate::host::redis_ffi::Ctx;

pub fn config_get(_: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() < 2 {
        return Reply::WrongArity;
    }
    let config = gearbox::get().config();
    let items = args[1..]
        .iter()
        .map(|name| match config.get(&text(name)) {
            Ok(ConfigValue::Int(n)) => Value::Int(n),
            Ok(ConfigValue::Str(s)) => Value::bulk(s),
            Ok(ConfigValue::List(l)) => Value::bulks(l),
            Err(e) => item_error(e),
        })
        .collect();
    Reply::Value(Value::Array(items))
}

/// A per-key failure inside RG.CONFIGGET/SET's reply array. RedisGears' texts start with
/// `(error) ` (spec §1: "(error) Unsupported config parameter: <k>"), which clients show as part
/// of the message.
fn item_error(e: String) -> Value {
    Value::Error(format!("(error) {e}"))
}

pub fn config_set(_: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() < 3 || args.len().is_multiple_of(2) {
        return Reply::WrongArity;
    }
    let mut config = gearbox::get().config_mut();
    let items = args[1..]
        .chunks(2)
        .map(|pair| match config.set(&text(&pair[0]), &text(&pair[1])) {
            Ok(SetOutcome::Set) => Value::Status("OK".into()),
            Ok(SetOutcome::SavedAsExtra) => Value::Status("OK - value was saved in extra config dictionary".into()),
            Err(e) => item_error(e),
        })
        .collect();
    Reply::Value(Value::Array(items))
}
