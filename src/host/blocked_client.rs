//! A client blocked until an execution finishes (RG.PYEXECUTE, RG.TRIGGER, RG.GETRESULTSBLOCKING,
//! hooked commands with async registrations): replied to and unblocked once, from any thread.

use std::ffi::c_void;

use gearbox_engine::Value;
use redis_module::raw;

use super::redis_ffi::{reply, Ctx};

/// A client blocked until an execution finishes. Replies once; if dropped without replying it
/// answers an error so the client never hangs.
pub struct BlockedClient(*mut raw::RedisModuleBlockedClient);

// SAFETY: the module API allows replying to and unblocking a blocked client from any thread.
unsafe impl Send for BlockedClient {}

pub fn block_client(ctx: Ctx) -> BlockedClient {
    // SAFETY: on the main thread inside a command that may block (checked by the caller).
    let bc = unsafe { raw::RedisModule_BlockClient.expect("API")(ctx.0, None, None, None, 0) };
    // SAFETY: measuring time makes the blocked command show in SLOWLOG with its real duration.
    unsafe { raw::RedisModule_BlockedClientMeasureTimeStart.expect("API")(bc) };
    BlockedClient(bc)
}

impl BlockedClient {
    pub fn reply(mut self, value: &Value) {
        self.finish(value);
    }

    fn finish(&mut self, value: &Value) {
        if self.0.is_null() {
            return;
        }
        let bc = std::mem::replace(&mut self.0, std::ptr::null_mut());
        // SAFETY: the documented pattern: a thread-safe context bound to the blocked client
        // collects the reply, then the client is unblocked; no Redis lock is needed.
        unsafe {
            raw::RedisModule_BlockedClientMeasureTimeEnd.expect("API")(bc);
            let tctx = raw::RedisModule_GetThreadSafeContext.expect("API")(bc);
            reply(Ctx(tctx), value);
            raw::RedisModule_FreeThreadSafeContext.expect("API")(tctx);
            raw::RedisModule_UnblockClient.expect("API")(bc, std::ptr::null_mut::<c_void>());
        }
    }
}

impl Drop for BlockedClient {
    fn drop(&mut self) {
        self.finish(&Value::Error("execution was dropped before it finished".into()));
    }
}
