//! The host calls a wasm guest may make (`execute()`, reading and scanning keys, logging, configs, `atomic()`,
//! `register()`, `registerTE()`, `call_next()` / `get_command()` / `override_reply()`), performed for it by the host thread that waits for its answer, through the
//! session's [`Host`]. Requests are untrusted frames: anything malformed gets an error reply.

use std::sync::Arc;

use gearbox_engine::{CommandRequest, Host, LogLevel, Value};

use super::marshal;
use super::wire::{self, kind};

/// Write a guest's log frame (`[level, message]`) to the Redis log.
pub fn log(host: Option<&Arc<dyn Host>>, value: &Value) {
    let (Some(host), Value::Array(items)) = (host, value) else { return };
    if let [level, message] = items.as_slice() {
        if let Some(level) = LogLevel::parse(&wire::text_of(level)) {
            host.log(level, &wire::text_of(message));
        }
    }
}

/// One host call from the guest, performed on the calling (waiting) thread; the answer's
/// payload (marshal).
pub fn serve(host: Option<&Arc<dyn Host>>, k: u8, value: &Value) -> Vec<u8> {
    let Some(host) = host else { return marshal::value(&Value::Error("gearbox: this interpreter has no host".into())) };
    match (k, value) {
        (kind::READ_KEYS, Value::Array(parts)) => match parts.as_slice() {
            [Value::Array(keys), Value::Int(read_value)] => {
                let keys: Vec<Vec<u8>> = keys.iter().filter_map(|k| wire::bytes_of(k).map(<[u8]>::to_vec)).collect();
                marshal::key_records(0, &host.read_keys(&keys, *read_value != 0), *read_value != 0)
            }
            _ => marshal::value(&Value::Error("gearbox: malformed read_keys from the guest".into())),
        },
        (kind::SCAN_KEYS, Value::Array(parts)) => match parts.as_slice() {
            [Value::Int(scan), pattern, Value::Int(read_value)] if *scan >= 0 => match wire::bytes_of(pattern) {
                Some(pattern) => match host.scan_keys(*scan as u64, pattern, *read_value != 0) {
                    Ok((next, records)) => marshal::key_records(next, &records, *read_value != 0),
                    Err(message) => marshal::value(&Value::Error(message)),
                },
                None => marshal::value(&Value::Error("gearbox: malformed scan_keys from the guest".into())),
            },
            _ => marshal::value(&Value::Error("gearbox: malformed scan_keys from the guest".into())),
        },
        _ => marshal::value(&serve_value(host, k, value)),
    }
}

/// The host calls whose answer is a plain value.
fn serve_value(host: &Arc<dyn Host>, k: u8, value: &Value) -> Value {
    match (k, value) {
        (kind::CALL, Value::Array(args)) => {
            let args: Option<Vec<&[u8]>> = args.iter().map(wire::bytes_of).collect();
            match args {
                Some(args) => host.call(&args),
                None => Value::Error("gearbox: malformed call from the guest".into()),
            }
        }
        (kind::COUNT_KEYS, Value::Array(parts)) => match parts.as_slice() {
            [Value::Int(scan), pattern, Value::Int(read_value)] if *scan >= 0 => match wire::bytes_of(pattern) {
                Some(pattern) => match host.count_keys(*scan as u64, pattern, *read_value != 0) {
                    Ok((next, n)) => Value::Array(vec![Value::Int(next as i64), Value::Int(n as i64)]),
                    Err(message) => Value::Error(message),
                },
                None => Value::Error("gearbox: malformed count_keys from the guest".into()),
            },
            _ => Value::Error("gearbox: malformed count_keys from the guest".into()),
        },
        (kind::SCAN_CLOSE, Value::Int(scan)) => {
            host.scan_close((*scan).max(0) as u64);
            Value::Nil
        }
        (kind::CONFIG_GET, name) => match host.config_get(&wire::text_of(name)) {
            Some(v) => Value::Bulk(v.into_bytes()),
            None => Value::Nil,
        },
        (kind::ATOMIC_BEGIN, _) => match host.atomic_begin() {
            Ok(()) => Value::Nil,
            Err(message) => Value::Error(message),
        },
        (kind::ATOMIC_END, _) => {
            host.atomic_end();
            Value::Nil
        }
        (kind::TIME_EVENT, Value::Array(parts)) => match parts.as_slice() {
            [Value::Int(seconds), Value::Int(handle), key @ ..] if key.len() <= 1 => {
                let key = key.first().and_then(wire::bytes_of).map(<[u8]>::to_vec);
                match host.time_event((*seconds).max(0) as u64, *handle, key) {
                    Ok(created) => Value::Int(created as i64),
                    Err(message) => Value::Error(message),
                }
            }
            _ => Value::Error("gearbox: malformed time_event from the guest".into()),
        },
        (kind::COMMAND, Value::Array(parts)) => match parts.as_slice() {
            [op, arg] => match CommandRequest::from_parts(&wire::text_of(op), arg.clone()) {
                Ok(request) => host.command(request),
                Err(message) => Value::Error(message),
            },
            _ => Value::Error("gearbox: malformed command request from the guest".into()),
        },
        (kind::ASYNC_ALLOWED, _) => Value::Int(host.may_wait_for_lock() as i64),
        (kind::REGISTER, spec) => match host.register(spec) {
            Ok(id) => Value::Bulk(id.into_bytes()),
            Err(message) => Value::Error(message),
        },
        _ => Value::Error(format!("gearbox: unknown request {k} from the guest")),
    }
}
