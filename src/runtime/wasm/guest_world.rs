//! The guest component's world (`wasm-python/wit/gearbox.wit`), bound by wasmtime's `bindgen!`:
//! the `channel` imports the guest sends and receives frames with, and the `serve` export the
//! instance thread calls once. The frames themselves are checked in `instance.rs` / `wire.rs`.

use super::instance::Guest;

wasmtime::component::bindgen!({
    path: "wasm-python/wit",
    world: "sandbox",
    imports: { default: trappable },
});

impl gearbox::guest::channel::Host for Guest {
    /// A frame from the guest; a malformed one traps (the instance is then discarded).
    fn send(&mut self, frame: Vec<u8>) -> wasmtime::Result<()> {
        self.channel_write(&frame).map_err(wasmtime::Error::msg)
    }

    fn recv(&mut self) -> wasmtime::Result<Vec<u8>> {
        Ok(self.channel_recv())
    }
}
