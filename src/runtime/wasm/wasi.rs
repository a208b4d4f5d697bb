//! The WASI 0.2 imports of the guest component, implemented by gearbox itself rather than by
//! wasmtime-wasi: the sandbox is what this file grants, nothing else. The guest gets
//! * an empty environment, no arguments, no working directory, no preopened directory (so no
//!   file can be opened: the standard library it may use is in its snapshot);
//! * the wall and monotonic clocks, random bytes, and sleeping (`pollable`s of the monotonic
//!   clock, waited for in slices so that a deadline or an abort still stops the guest);
//! * stdout and stderr as streams that go to the Redis log, and an empty stdin;
//! * no sockets: making one, or looking a name up, answers `access-denied` (a PermissionError in
//!   Python);
//! * nothing else: every other import (file operations, terminals…) traps, which ends only that
//!   guest's instance.
//!
//! No wasmtime-wasi means no tokio runtime and no extra threads in redis-server. Every import is
//! an entry from wasm: a panic in it becomes a trap, never an unwind into the guest.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentType, Lift, Linker, LinkerInstance, Lower, Resource, ResourceType, Val};
use wasmtime::{Engine, StoreContextMut};

use super::instance::Guest;

/// A pollable: ready at `at` (a monotonic-clock subscription), or at once (`None`: streams).
pub struct Pollable {
    at: Option<Instant>,
}

/// stdout (1) or stderr (2).
pub struct OutputStream {
    fd: i32,
}

/// stdin: always at its end.
pub struct InputStream;

/// Any other WASI resource: the guest can never get one (every function making one traps).
pub struct Unreachable;

#[derive(ComponentType, Lower, Lift, Clone, Copy)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

#[derive(ComponentType, Lower, Lift)]
#[component(variant)]
enum StreamError {
    #[component(name = "last-operation-failed")]
    LastOperationFailed(Resource<Unreachable>),
    #[component(name = "closed")]
    Closed,
}

/// wasi:sockets/network's `error-code` (every case, in order, as the type check wants them).
#[allow(dead_code, reason = "only access-denied is made; the others are there for the type check")]
#[derive(ComponentType, Lower, Lift, Clone, Copy)]
#[component(enum)]
#[repr(u8)]
enum SocketError {
    #[component(name = "unknown")]
    Unknown,
    #[component(name = "access-denied")]
    AccessDenied,
    #[component(name = "not-supported")]
    NotSupported,
    #[component(name = "invalid-argument")]
    InvalidArgument,
    #[component(name = "out-of-memory")]
    OutOfMemory,
    #[component(name = "timeout")]
    Timeout,
    #[component(name = "concurrency-conflict")]
    ConcurrencyConflict,
    #[component(name = "not-in-progress")]
    NotInProgress,
    #[component(name = "would-block")]
    WouldBlock,
    #[component(name = "invalid-state")]
    InvalidState,
    #[component(name = "new-socket-limit")]
    NewSocketLimit,
    #[component(name = "address-not-bindable")]
    AddressNotBindable,
    #[component(name = "address-in-use")]
    AddressInUse,
    #[component(name = "remote-unreachable")]
    RemoteUnreachable,
    #[component(name = "connection-refused")]
    ConnectionRefused,
    #[component(name = "connection-reset")]
    ConnectionReset,
    #[component(name = "connection-aborted")]
    ConnectionAborted,
    #[component(name = "datagram-too-large")]
    DatagramTooLarge,
    #[component(name = "name-unresolvable")]
    NameUnresolvable,
    #[component(name = "temporary-resolver-failure")]
    TemporaryResolverFailure,
    #[component(name = "permanent-resolver-failure")]
    PermanentResolverFailure,
}

type StreamResult<T> = wasmtime::Result<(Result<T, StreamError>,)>;

/// Run an import's body; a panic becomes a trap.
fn entry<R>(f: impl FnOnce() -> wasmtime::Result<R>) -> wasmtime::Result<R> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(wasmtime::Error::msg("gearbox: internal error (panic) in a WASI import")))
}

/// The full name (with its version) of the WASI interface `prefix` the component imports.
fn imported(names: &[String], prefix: &str) -> Option<String> {
    names.iter().find(|n| n.split('@').next() == Some(prefix)).cloned()
}

/// The linker's instance for the WASI interface `prefix`, if the component imports it.
fn iface<'a>(linker: &'a mut Linker<Guest>, names: &[String], prefix: &str) -> wasmtime::Result<Option<LinkerInstance<'a, Guest>>> {
    match imported(names, prefix) {
        Some(full) => Ok(Some(linker.instance(&full)?)),
        None => Ok(None),
    }
}

/// Define every WASI import gearbox grants; the caller makes the rest trap.
pub fn add_to_linker(linker: &mut Linker<Guest>, engine: &Engine, component: &Component) -> wasmtime::Result<()> {
    let ty = component.component_type();
    let names: Vec<String> = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
    // Resources first, by name, in every interface that names them (their own and the ones that
    // alias them), so that one WASI resource is one host type everywhere.
    for (name, item) in ty.imports(engine) {
        let ComponentItem::ComponentInstance(instance) = item.ty else { continue };
        if !name.starts_with("wasi:") {
            continue;
        }
        let mut inst = linker.instance(name)?;
        for (resource, item) in instance.exports(engine) {
            if let ComponentItem::Resource(_) = item.ty {
                define_resource(&mut inst, resource)?;
            }
        }
    }
    if let Some(mut i) = iface(linker, &names, "wasi:cli/environment")? {
        i.func_wrap("get-environment", |_, (): ()| Ok((Vec::<(String, String)>::new(),)))?;
        i.func_wrap("get-arguments", |_, (): ()| Ok((Vec::<String>::new(),)))?;
        i.func_wrap("initial-cwd", |_, (): ()| Ok((None::<String>,)))?;
    }
    if let Some(mut i) = iface(linker, &names, "wasi:cli/exit")? {
        i.func_wrap("exit", |_, (status,): (Result<(), ()>,)| -> wasmtime::Result<()> {
            Err(wasmtime::Error::msg(format!("the wasm guest exited ({})", if status.is_ok() { "success" } else { "failure" })))
        })?;
    }
    if let Some(mut i) = iface(linker, &names, "wasi:random/random")? {
        i.func_wrap("get-random-bytes", |_, (n,): (u64,)| entry(|| Ok((random_bytes(n.min(1 << 20) as usize),))))?;
        i.func_wrap("get-random-u64", |_, (): ()| entry(|| Ok((random_u64(),))))?;
    }
    if let Some(mut i) = iface(linker, &names, "wasi:clocks/wall-clock")? {
        i.func_wrap("now", |_, (): ()| {
            let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            Ok((Datetime { seconds: d.as_secs(), nanoseconds: d.subsec_nanos() },))
        })?;
        i.func_wrap("resolution", |_, (): ()| Ok((Datetime { seconds: 0, nanoseconds: 1 },)))?;
    }
    if let Some(mut i) = iface(linker, &names, "wasi:clocks/monotonic-clock")? {
        i.func_wrap("now", |store: StoreContextMut<'_, Guest>, (): ()| Ok((store.data().started.elapsed().as_nanos() as u64,)))?;
        i.func_wrap("resolution", |_, (): ()| Ok((1u64,)))?;
        i.func_wrap("subscribe-duration", |mut store: StoreContextMut<'_, Guest>, (ns,): (u64,)| {
            entry(|| {
                let at = Instant::now().checked_add(Duration::from_nanos(ns));
                Ok((store.data_mut().table.push(Pollable { at: Some(at.unwrap_or_else(far_future)) })?,))
            })
        })?;
        i.func_wrap("subscribe-instant", |mut store: StoreContextMut<'_, Guest>, (ns,): (u64,)| {
            entry(|| {
                let g = store.data_mut();
                let at = g.started.checked_add(Duration::from_nanos(ns)).unwrap_or_else(far_future);
                Ok((g.table.push(Pollable { at: Some(at) })?,))
            })
        })?;
    }
    if let Some(mut i) = iface(linker, &names, "wasi:io/poll")? {
        i.func_wrap("poll", |mut store: StoreContextMut<'_, Guest>, (list,): (Vec<Resource<Pollable>>,)| {
            entry(|| {
                let g = store.data_mut();
                let ats = list.iter().map(|p| Ok(g.table.get(p)?.at)).collect::<wasmtime::Result<Vec<_>>>()?;
                let first = ats.iter().map(|a| a.unwrap_or_else(Instant::now)).min().unwrap_or_else(Instant::now);
                sleep_until(g, first)?;
                let now = Instant::now();
                Ok((ats.iter().enumerate().filter(|(_, a)| a.is_none_or(|a| a <= now)).map(|(n, _)| n as u32).collect::<Vec<u32>>(),))
            })
        })?;
        i.func_wrap("[method]pollable.ready", |store: StoreContextMut<'_, Guest>, (p,): (Resource<Pollable>,)| {
            entry(|| Ok((store.data().table.get(&p)?.at.is_none_or(|a| a <= Instant::now()),)))
        })?;
        i.func_wrap("[method]pollable.block", |mut store: StoreContextMut<'_, Guest>, (p,): (Resource<Pollable>,)| {
            entry(|| {
                let g = store.data_mut();
                let at = g.table.get(&p)?.at.unwrap_or_else(Instant::now);
                sleep_until(g, at)
            })
        })?;
    }
    for (prefix, getter, fd) in [("wasi:cli/stdout", "get-stdout", 1), ("wasi:cli/stderr", "get-stderr", 2)] {
        if let Some(mut i) = iface(linker, &names, prefix)? {
            i.func_wrap(getter, move |mut store: StoreContextMut<'_, Guest>, (): ()| {
                entry(|| Ok((store.data_mut().table.push(OutputStream { fd })?,)))
            })?;
        }
    }
    if let Some(mut i) = iface(linker, &names, "wasi:cli/stdin")? {
        i.func_wrap("get-stdin", |mut store: StoreContextMut<'_, Guest>, (): ()| {
            entry(|| Ok((store.data_mut().table.push(InputStream)?,)))
        })?;
    }
    for (prefix, getter) in [
        ("wasi:cli/terminal-stdin", "get-terminal-stdin"),
        ("wasi:cli/terminal-stdout", "get-terminal-stdout"),
        ("wasi:cli/terminal-stderr", "get-terminal-stderr"),
    ] {
        if let Some(mut i) = iface(linker, &names, prefix)? {
            i.func_wrap(getter, |_, (): ()| Ok((None::<Resource<Unreachable>>,)))?;
        }
    }
    if let Some(mut i) = iface(linker, &names, "wasi:filesystem/preopens")? {
        i.func_wrap("get-directories", |_, (): ()| Ok((Vec::<(Resource<Unreachable>, String)>::new(),)))?;
    }
    if let Some(mut i) = iface(linker, &names, "wasi:io/streams")? {
        add_streams(&mut i)?;
    }
    add_socket_denials(linker, &names)
}

/// Sockets and name lookups are refused with `access-denied`; the network handle the guest's C
/// library asks for first is a placeholder nothing can be done with.
fn add_socket_denials(linker: &mut Linker<Guest>, names: &[String]) -> wasmtime::Result<()> {
    if let Some(mut i) = iface(linker, names, "wasi:sockets/instance-network")? {
        i.func_wrap("instance-network", |_, (): ()| Ok((Resource::<Unreachable>::new_own(0),)))?;
    }
    if let Some(mut i) = iface(linker, names, "wasi:sockets/ip-name-lookup")? {
        // Typed, so that the borrowed network handle is released as the call ends.
        i.func_wrap("resolve-addresses", |_, (_network, _name): (Resource<Unreachable>, String)| {
            Ok((Err::<Resource<Unreachable>, _>(SocketError::AccessDenied),))
        })?;
    }
    for (prefix, func) in [("wasi:sockets/tcp-create-socket", "create-tcp-socket"), ("wasi:sockets/udp-create-socket", "create-udp-socket")]
    {
        if let Some(mut i) = iface(linker, names, prefix)? {
            i.func_new(func, |_, _, _, results| {
                if let Some(slot) = results.first_mut() {
                    *slot = Val::Result(Err(Some(Box::new(Val::Enum("access-denied".into())))));
                }
                Ok(())
            })?;
        }
    }
    Ok(())
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(100 * 365 * 86_400)
}

/// Sleep until `at`, in slices: a deadline or an abort stops the guest (a trap) meanwhile.
fn sleep_until(g: &Guest, at: Instant) -> wasmtime::Result<()> {
    loop {
        g.check_interrupt().map_err(wasmtime::Error::msg)?;
        let now = Instant::now();
        if now >= at {
            return Ok(());
        }
        std::thread::sleep((at - now).min(Duration::from_millis(10)));
    }
}

fn add_streams(i: &mut LinkerInstance<'_, Guest>) -> wasmtime::Result<()> {
    i.func_wrap("[method]output-stream.check-write", |_, (_s,): (Resource<OutputStream>,)| -> StreamResult<u64> { Ok((Ok(1 << 16),)) })?;
    for name in ["[method]output-stream.write", "[method]output-stream.blocking-write-and-flush"] {
        i.func_wrap(name, |mut store: StoreContextMut<'_, Guest>, (s, data): (Resource<OutputStream>, Vec<u8>)| -> StreamResult<()> {
            entry(|| {
                let g = store.data_mut();
                let fd = g.table.get(&s)?.fd;
                g.stdio_write(fd, &data);
                Ok((Ok(()),))
            })
        })?;
    }
    for name in ["[method]output-stream.flush", "[method]output-stream.blocking-flush"] {
        i.func_wrap(name, |_, (_s,): (Resource<OutputStream>,)| -> StreamResult<()> { Ok((Ok(()),)) })?;
    }
    i.func_wrap("[method]output-stream.subscribe", |mut store: StoreContextMut<'_, Guest>, (_s,): (Resource<OutputStream>,)| {
        entry(|| Ok((store.data_mut().table.push(Pollable { at: None })?,)))
    })?;
    for name in ["[method]input-stream.read", "[method]input-stream.blocking-read"] {
        i.func_wrap(name, |_, (_s, _n): (Resource<InputStream>, u64)| -> StreamResult<Vec<u8>> { Ok((Err(StreamError::Closed),)) })?;
    }
    i.func_wrap("[method]input-stream.subscribe", |mut store: StoreContextMut<'_, Guest>, (_s,): (Resource<InputStream>,)| {
        entry(|| Ok((store.data_mut().table.push(Pollable { at: None })?,)))
    })?;
    Ok(())
}

/// One WASI resource type, by name; what gearbox makes of it is freed with it.
fn define_resource(inst: &mut LinkerInstance<'_, Guest>, name: &str) -> wasmtime::Result<()> {
    match name {
        "pollable" => inst.resource(name, ResourceType::host::<Pollable>(), |mut store, rep| {
            store.data_mut().table.delete(Resource::<Pollable>::new_own(rep)).map(drop).map_err(wasmtime::Error::from)
        }),
        "output-stream" => inst.resource(name, ResourceType::host::<OutputStream>(), |mut store, rep| {
            store.data_mut().table.delete(Resource::<OutputStream>::new_own(rep)).map(drop).map_err(wasmtime::Error::from)
        }),
        "input-stream" => inst.resource(name, ResourceType::host::<InputStream>(), |mut store, rep| {
            store.data_mut().table.delete(Resource::<InputStream>::new_own(rep)).map(drop).map_err(wasmtime::Error::from)
        }),
        _ => inst.resource(name, ResourceType::host::<Unreachable>(), |_, _| Ok(())),
    }
}

/// Random bytes from the kernel (getrandom); never blocks once the pool is initialised.
fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        // SAFETY: writes at most `n - filled` bytes into `out`, which owns that many from `filled`.
        let got = unsafe { libc::getrandom(out[filled..].as_mut_ptr().cast(), n - filled, 0) };
        if got <= 0 {
            break;
        }
        filled += got as usize;
    }
    out
}

fn random_u64() -> u64 {
    let b = random_bytes(8);
    u64::from_le_bytes(b.try_into().unwrap_or([0; 8]))
}
