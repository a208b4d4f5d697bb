//! Small RedisGears commands that only make sense in a cluster or are kept for old clients:
//! RG.INFOCLUSTER, RG.REFRESHCLUSTER, RG.NETWORKTEST, RG.DUMPPLUGINS, RG.PYEXECUTEREMOTE,
//! RG.PYFREEINTERPRETER.

use gearbox_engine::errors;
use gearbox_engine::Value;

use super::Reply;
use crate::host::redis_ffi::Ctx;

pub fn info_cluster(_: Ctx, args: &[Vec<u8>]) -> Reply {
    if args.len() != 1 {
        return Reply::WrongArity;
    }
    Reply::Value(Value::bulk(errors::NO_CLUSTER_MODE))
}

pub fn ok(_: Ctx, _: &[Vec<u8>]) -> Reply {
    Reply::ok()
}

/// The RedisGears Python plugin version whose behaviour gearbox follows (1.2.13).
const COMPATIBLE_PLUGIN_VERSION: i64 = 10213;

pub fn dump_plugins(_: Ctx, _: &[Vec<u8>]) -> Reply {
    let plugin = Value::Array(vec![Value::bulk("GearsPythonPlugin"), Value::Int(COMPATIBLE_PLUGIN_VERSION)]);
    Reply::Value(Value::Array(vec![plugin]))
}

pub fn execute_remote(_: Ctx, _: &[Vec<u8>]) -> Reply {
    Reply::Value(Value::bulk(errors::REMOTE_NOT_SUPPORTED))
}

pub fn free_interpreter(_: Ctx, _: &[Vec<u8>]) -> Reply {
    Reply::Value(Value::bulk(errors::FREE_INTERPRETER_NOT_SUPPORTED))
}
