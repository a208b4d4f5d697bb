//! The WASI preview-1 imports of the guest, implemented by gearbox itself rather than by
//! wasmtime-wasi: the sandbox is what this file grants, nothing else. The guest gets
//! * descriptors 0 (empty stdin), 1 and 2 (to the Redis log), and the private channel descriptor
//!   [`CHANNEL_FD`] to its host; `fd_close` of any of them only affects this guest;
//! * its argv, an empty environment (`PYTHONDONTWRITEBYTECODE=1` only), clocks, random bytes,
//!   `poll_oneoff` for sleeping (interruptible by the deadline / abort), `proc_exit`;
//! * no preopened directory (the standard library lives in the module's own wasi-vfs), no
//!   sockets: every other import answers `EBADF` / `ENOSYS` / `ENOTCAPABLE`.
//!
//! No wasmtime-wasi means no tokio runtime and no extra threads in redis-server. Every import is
//! an entry from wasm: a panic in it becomes a trap, never an unwind into the guest.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, ExternType, Linker, Module, Val};

use super::instance::Guest;

/// The descriptor of the host channel inside the guest. The guest's wasi-vfs layer only forwards
/// descriptors the host announced, so the channel is announced as the one host "preopen"
/// ([`CHANNEL_NAME`]); every path operation on it is refused, only read/write work.
pub const CHANNEL_FD: i32 = 3;
const CHANNEL_NAME: &[u8] = b"/.gearbox-channel";

const SUCCESS: i32 = 0;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINVAL: i32 = 28;
const ENOSYS: i32 = 52;
const ENOTCAPABLE: i32 = 76;
const ESPIPE: i32 = 70;

const FILETYPE_CHARACTER_DEVICE: u8 = 2;

type R = wasmtime::Result<i32>;

/// Run an import's body; a panic becomes a trap.
fn entry(f: impl FnOnce() -> R) -> R {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => Err(wasmtime::Error::msg("gearbox: internal error (panic) in a WASI import")),
    }
}

fn memory<'a>(caller: &'a mut Caller<'_, Guest>) -> wasmtime::Result<(&'a mut [u8], &'a mut Guest)> {
    let mem = caller.get_export("memory").and_then(|e| e.into_memory()).ok_or_else(|| wasmtime::Error::msg("guest exports no memory"))?;
    Ok(mem.data_and_store_mut(caller))
}

fn slice(mem: &[u8], ptr: i32, len: u32) -> Option<&[u8]> {
    let start = ptr as u32 as usize;
    mem.get(start..start.checked_add(len as usize)?)
}

fn slice_mut(mem: &mut [u8], ptr: i32, len: u32) -> Option<&mut [u8]> {
    let start = ptr as u32 as usize;
    mem.get_mut(start..start.checked_add(len as usize)?)
}

fn put(mem: &mut [u8], ptr: i32, bytes: &[u8]) -> bool {
    match slice_mut(mem, ptr, bytes.len() as u32) {
        Some(dst) => {
            dst.copy_from_slice(bytes);
            true
        }
        None => false,
    }
}

fn get_u32(mem: &[u8], ptr: i32) -> Option<u32> {
    slice(mem, ptr, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn get_u64(mem: &[u8], ptr: i64) -> Option<u64> {
    let start = usize::try_from(ptr).ok()?;
    mem.get(start..start + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
}

/// `(ptr, len)` of each iovec.
fn iovecs(mem: &[u8], iovs: i32, count: i32) -> Option<Vec<(i32, u32)>> {
    (0..count as u32)
        .map(|i| {
            let at = (iovs as u32).checked_add(i.checked_mul(8)?)? as i32;
            Some((get_u32(mem, at)? as i32, get_u32(mem, at + 4)?))
        })
        .collect()
}

/// Write a list of NUL-terminated strings the way `args_get` / `environ_get` want them.
fn put_strings(mem: &mut [u8], list: &[Vec<u8>], ptrs: i32, buf: i32) -> i32 {
    let mut at = buf as u32;
    for (i, s) in list.iter().enumerate() {
        let mut z = s.clone();
        z.push(0);
        if !put(mem, ptrs + 4 * i as i32, &at.to_le_bytes()) || !put(mem, at as i32, &z) {
            return EFAULT;
        }
        at += z.len() as u32;
    }
    SUCCESS
}

fn sizes(mem: &mut [u8], list: &[Vec<u8>], count_ptr: i32, size_ptr: i32) -> i32 {
    let size: usize = list.iter().map(|s| s.len() + 1).sum();
    if put(mem, count_ptr, &(list.len() as u32).to_le_bytes()) && put(mem, size_ptr, &(size as u32).to_le_bytes()) {
        SUCCESS
    } else {
        EFAULT
    }
}

fn is_stdio(guest: &Guest, fd: i32) -> bool {
    fd == CHANNEL_FD || (0..=2).contains(&fd) && !guest.closed[fd as usize]
}

fn now_ns(clock: i32, started: Instant) -> u64 {
    match clock {
        0 => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0),
        _ => started.elapsed().as_nanos() as u64,
    }
}

/// The imports implemented by hand below.
const HANDLED: &[&str] = &[
    "args_get",
    "args_sizes_get",
    "environ_get",
    "environ_sizes_get",
    "clock_res_get",
    "clock_time_get",
    "random_get",
    "sched_yield",
    "proc_exit",
    "fd_write",
    "fd_read",
    "fd_close",
    "fd_fdstat_get",
    "fd_filestat_get",
    "fd_fdstat_set_flags",
    "fd_seek",
    "fd_tell",
    "poll_oneoff",
    "fd_prestat_get",
    "fd_prestat_dir_name",
];

/// Add the guest's WASI imports to `linker`: the ones above by hand, every other import the
/// module declares as a stub answering an errno.
pub fn add_to_linker(linker: &mut Linker<Guest>, module: &Module) -> wasmtime::Result<()> {
    const M: &str = "wasi_snapshot_preview1";
    linker.func_wrap(M, "args_get", |mut c: Caller<'_, Guest>, argv: i32, buf: i32| {
        entry(|| memory(&mut c).map(|(mem, g)| put_strings(mem, &g.args, argv, buf)))
    })?;
    linker.func_wrap(M, "args_sizes_get", |mut c: Caller<'_, Guest>, n: i32, size: i32| {
        entry(|| memory(&mut c).map(|(mem, g)| sizes(mem, &g.args, n, size)))
    })?;
    linker.func_wrap(M, "environ_get", |mut c: Caller<'_, Guest>, envp: i32, buf: i32| {
        entry(|| memory(&mut c).map(|(mem, g)| put_strings(mem, &g.env, envp, buf)))
    })?;
    linker.func_wrap(M, "environ_sizes_get", |mut c: Caller<'_, Guest>, n: i32, size: i32| {
        entry(|| memory(&mut c).map(|(mem, g)| sizes(mem, &g.env, n, size)))
    })?;
    linker.func_wrap(M, "clock_res_get", |mut c: Caller<'_, Guest>, _id: i32, out: i32| {
        entry(|| memory(&mut c).map(|(mem, _)| if put(mem, out, &1000u64.to_le_bytes()) { SUCCESS } else { EFAULT }))
    })?;
    linker.func_wrap(M, "clock_time_get", |mut c: Caller<'_, Guest>, id: i32, _precision: i64, out: i32| {
        entry(|| {
            memory(&mut c).map(|(mem, g)| {
                if !(0..=3).contains(&id) {
                    return EINVAL;
                }
                if put(mem, out, &now_ns(id, g.started).to_le_bytes()) {
                    SUCCESS
                } else {
                    EFAULT
                }
            })
        })
    })?;
    linker.func_wrap(M, "random_get", |mut c: Caller<'_, Guest>, buf: i32, len: i32| {
        entry(|| {
            memory(&mut c).map(|(mem, _)| match slice_mut(mem, buf, len as u32) {
                Some(dst) => {
                    // SAFETY: `dst` is a valid, writable slice of `dst.len()` bytes.
                    let n = unsafe { libc::getrandom(dst.as_mut_ptr().cast(), dst.len(), 0) };
                    if n == dst.len() as isize {
                        SUCCESS
                    } else {
                        EINVAL
                    }
                }
                None => EFAULT,
            })
        })
    })?;
    linker.func_wrap(M, "sched_yield", || SUCCESS)?;
    linker.func_wrap(M, "proc_exit", |mut c: Caller<'_, Guest>, code: i32| -> wasmtime::Result<()> {
        c.data_mut().exit_code = Some(code);
        Err(wasmtime::Error::msg(format!("guest exited with code {code}")))
    })?;
    linker.func_wrap(M, "fd_write", |mut c: Caller<'_, Guest>, fd: i32, iovs: i32, count: i32, written: i32| {
        entry(|| {
            let (mem, g) = memory(&mut c)?;
            if !is_stdio(g, fd) || fd == 0 {
                return Ok(EBADF);
            }
            let Some(vecs) = iovecs(mem, iovs, count) else { return Ok(EFAULT) };
            let mut data = Vec::new();
            for (p, l) in vecs {
                match slice(mem, p, l) {
                    Some(s) => data.extend_from_slice(s),
                    None => return Ok(EFAULT),
                }
            }
            if !put(mem, written, &(data.len() as u32).to_le_bytes()) {
                return Ok(EFAULT);
            }
            if fd == CHANNEL_FD {
                g.channel_write(&data).map_err(wasmtime::Error::msg)?;
            } else {
                g.stdio_write(fd, &data);
            }
            Ok(SUCCESS)
        })
    })?;
    linker.func_wrap(M, "fd_read", |mut c: Caller<'_, Guest>, fd: i32, iovs: i32, count: i32, read: i32| {
        entry(|| {
            let (mem, g) = memory(&mut c)?;
            if !is_stdio(g, fd) || fd == 1 || fd == 2 {
                return Ok(EBADF);
            }
            let Some(vecs) = iovecs(mem, iovs, count) else { return Ok(EFAULT) };
            let mut n = 0usize;
            if fd == CHANNEL_FD {
                if let Some(&(p, l)) = vecs.iter().find(|(_, l)| *l > 0) {
                    let Some(dst) = slice_mut(mem, p, l) else { return Ok(EFAULT) };
                    n = g.channel_read(dst);
                }
            }
            Ok(if put(mem, read, &(n as u32).to_le_bytes()) { SUCCESS } else { EFAULT })
        })
    })?;
    linker.func_wrap(M, "fd_close", |mut c: Caller<'_, Guest>, fd: i32| {
        entry(|| {
            let g = c.data_mut();
            Ok(match fd {
                0..=2 if !g.closed[fd as usize] => {
                    g.closed[fd as usize] = true;
                    SUCCESS
                }
                // The channel cannot be closed from inside: the host owns it.
                _ => EBADF,
            })
        })
    })?;
    linker.func_wrap(M, "fd_fdstat_get", |mut c: Caller<'_, Guest>, fd: i32, out: i32| {
        entry(|| {
            let (mem, g) = memory(&mut c)?;
            if !is_stdio(g, fd) {
                return Ok(EBADF);
            }
            let mut stat = [0u8; 24];
            stat[0] = FILETYPE_CHARACTER_DEVICE;
            // rights: fd_read (bit 1), fd_write (bit 6), poll_fd_readwrite (bit 27); no seek/tell.
            stat[8..16].copy_from_slice(&((1u64 << 1) | (1 << 6) | (1 << 27)).to_le_bytes());
            Ok(if put(mem, out, &stat) { SUCCESS } else { EFAULT })
        })
    })?;
    linker.func_wrap(M, "fd_filestat_get", |mut c: Caller<'_, Guest>, fd: i32, out: i32| {
        entry(|| {
            let (mem, g) = memory(&mut c)?;
            if !is_stdio(g, fd) {
                return Ok(EBADF);
            }
            let mut stat = [0u8; 64];
            stat[16] = FILETYPE_CHARACTER_DEVICE;
            stat[24..32].copy_from_slice(&1u64.to_le_bytes());
            Ok(if put(mem, out, &stat) { SUCCESS } else { EFAULT })
        })
    })?;
    linker.func_wrap(M, "fd_fdstat_set_flags", |c: Caller<'_, Guest>, fd: i32, _flags: i32| {
        entry(|| Ok(if is_stdio(c.data(), fd) { SUCCESS } else { EBADF }))
    })?;
    linker.func_wrap(M, "fd_seek", |c: Caller<'_, Guest>, fd: i32, _off: i64, _whence: i32, _out: i32| {
        entry(|| Ok(if is_stdio(c.data(), fd) { ESPIPE } else { EBADF }))
    })?;
    linker.func_wrap(M, "fd_tell", |c: Caller<'_, Guest>, fd: i32, _out: i32| {
        entry(|| Ok(if is_stdio(c.data(), fd) { ESPIPE } else { EBADF }))
    })?;
    linker.func_wrap(M, "fd_prestat_get", |mut c: Caller<'_, Guest>, fd: i32, out: i32| {
        entry(|| {
            let (mem, _) = memory(&mut c)?;
            if fd != CHANNEL_FD {
                return Ok(EBADF);
            }
            let mut prestat = [0u8; 8];
            prestat[4..8].copy_from_slice(&(CHANNEL_NAME.len() as u32).to_le_bytes());
            Ok(if put(mem, out, &prestat) { SUCCESS } else { EFAULT })
        })
    })?;
    linker.func_wrap(M, "fd_prestat_dir_name", |mut c: Caller<'_, Guest>, fd: i32, buf: i32, len: i32| {
        entry(|| {
            let (mem, _) = memory(&mut c)?;
            if fd != CHANNEL_FD {
                return Ok(EBADF);
            }
            let n = (len.max(0) as usize).min(CHANNEL_NAME.len());
            Ok(if put(mem, buf, &CHANNEL_NAME[..n]) { SUCCESS } else { EFAULT })
        })
    })?;
    linker.func_wrap(M, "poll_oneoff", |mut c: Caller<'_, Guest>, input: i32, output: i32, n: i32, nevents: i32| {
        entry(|| poll_oneoff(&mut c, input, output, n, nevents))
    })?;
    // Everything else the module imports: no such capability.
    for import in module.imports() {
        let (m, name) = (import.module().to_string(), import.name().to_string());
        if m != M || HANDLED.contains(&name.as_str()) {
            continue;
        }
        let ExternType::Func(ty) = import.ty() else { continue };
        let errno = if name.starts_with("sock_") {
            ENOSYS
        } else if name.starts_with("path_") {
            ENOTCAPABLE
        } else {
            EBADF
        };
        // GEARBOX_WASI_TRACE=1 in redis-server's environment prints every refused import.
        let trace = std::env::var_os("GEARBOX_WASI_TRACE").is_some();
        let label = name.clone();
        linker.func_new(&m, &name, ty, move |_c, params, results| {
            if trace {
                eprintln!("wasi stub {label}{params:?} -> {errno}");
            }
            if let Some(r) = results.first_mut() {
                *r = Val::I32(errno);
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// Clock subscriptions sleep (in slices, so a deadline or abort still stops the guest); fd
/// subscriptions are always ready.
fn poll_oneoff(c: &mut Caller<'_, Guest>, input: i32, output: i32, n: i32, nevents: i32) -> R {
    if n <= 0 {
        return Ok(EINVAL);
    }
    let (mem, g) = memory(c)?;
    let started = g.started;
    let mut events = Vec::new();
    let mut sleep = Duration::ZERO;
    for i in 0..n as i64 {
        let at = input as u32 as i64 + i * 48;
        let (Some(userdata), Some(tag)) = (get_u64(mem, at), mem.get(at as usize + 8).copied()) else {
            return Ok(EFAULT);
        };
        let mut ev = [0u8; 32];
        ev[0..8].copy_from_slice(&userdata.to_le_bytes());
        ev[10] = tag;
        if tag == 0 {
            let (Some(id), Some(timeout), Some(flags)) = (get_u32(mem, at as i32 + 16), get_u64(mem, at + 24), get_u64(mem, at + 40))
            else {
                return Ok(EFAULT);
            };
            let wait = if flags & 1 == 1 { timeout.saturating_sub(now_ns(id as i32, started)) } else { timeout };
            sleep = if events.is_empty() || Duration::from_nanos(wait) < sleep { Duration::from_nanos(wait) } else { sleep };
        } else {
            let fd = get_u32(mem, at as i32 + 16).map(|f| f as i32).unwrap_or(-1);
            let errno: u16 = if is_stdio(g, fd) { 0 } else { EBADF as u16 };
            ev[8..10].copy_from_slice(&errno.to_le_bytes());
        }
        events.push((tag, ev));
    }
    let any_fd = events.iter().any(|(t, _)| *t != 0);
    if !any_fd {
        let until = Instant::now() + sleep;
        while Instant::now() < until {
            g.check_interrupt().map_err(wasmtime::Error::msg)?;
            std::thread::sleep((until - Instant::now()).min(Duration::from_millis(10)));
        }
    }
    let mut count = 0u32;
    for (tag, ev) in events {
        if any_fd && tag == 0 {
            continue;
        }
        if !put(mem, output + 32 * count as i32, &ev) {
            return Ok(EFAULT);
        }
        count += 1;
    }
    Ok(if put(mem, nevents, &count.to_le_bytes()) { SUCCESS } else { EFAULT })
}
