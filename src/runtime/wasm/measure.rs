//! Measurements of the wasm runtime without Redis (`cargo test --release --lib wasm::measure --
//! --ignored --nocapture`): instantiate time, a new instance to its first answer, host-call
//! round trip, and resident memory per parked instance. Ignored by default: it needs the built
//! guest and takes seconds.

use std::sync::Arc;
use std::time::Instant;

use gearbox_engine::port::ScriptOutcome;
use gearbox_engine::{Host, KeyRecord, LogLevel, Runtime, Value};
use wasmtime::Store;

use super::instance::Instance;
use super::{wire, Settings, WasmRuntime};

struct NullHost;

impl Host for NullHost {
    fn call(&self, args: &[&[u8]]) -> Value {
        Value::Bulk(args.first().map(|a| a.to_vec()).unwrap_or_default())
    }
    fn read_keys(&self, _keys: &[Vec<u8>], _read_value: bool) -> Vec<KeyRecord> {
        Vec::new()
    }
    fn scan_keys(&self, _scan: u64, _pattern: &[u8], _read_value: bool) -> Result<(u64, Vec<KeyRecord>), String> {
        Ok((0, Vec::new()))
    }
    fn scan_close(&self, _scan: u64) {}
    fn log(&self, level: LogLevel, message: &str) {
        if level != LogLevel::Debug {
            println!("[guest log {}] {message}", level.as_str());
        }
    }
    fn config_get(&self, _name: &str) -> Option<String> {
        None
    }
    fn may_wait_for_lock(&self) -> bool {
        false
    }
    fn atomic_begin(&self) -> Result<(), String> {
        Ok(())
    }
    fn atomic_end(&self) {}
    fn register(&self, _spec: &Value) -> Result<String, String> {
        Err("not in a measurement".into())
    }
    fn time_event(&self, _seconds: u64, _handle: i64, _key: Option<Vec<u8>>) -> Result<bool, String> {
        Err("not in a measurement".into())
    }
    fn command(&self, _request: gearbox_engine::CommandRequest) -> Value {
        Value::Error("not in a measurement".into())
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

#[test]
#[ignore]
fn measure_instances() {
    let t = Instant::now();
    let rt = WasmRuntime::start(Settings { python_path: None, warm_instances: 0 }).expect("start");
    println!("runtime start (verify + load/compile + first instance): {:?} ({})", t.elapsed(), rt.load_note);
    let shared = rt.shared.clone();

    let n = 20;
    let t = Instant::now();
    for _ in 0..n {
        let mut store = Store::new(&shared.engine, super::instance::test_guest());
        store.set_epoch_deadline(1 << 40);
        shared.pre.instantiate(&mut store).expect("instantiate");
    }
    println!("instantiate (no serve): {:?} per instance", t.elapsed() / n);

    let t = Instant::now();
    for _ in 0..n {
        let inst = Instance::spawn(&shared.engine, &shared.pre, 1 << 30).expect("spawn");
        let first = inst.command(wire::kind::DROP_PLAN, &Value::Int(0), None, None, false);
        assert!(first.is_ok());
    }
    println!("spawn + first answer + drop: {:?} per instance", t.elapsed() / n);

    let host: Arc<dyn Host> = Arc::new(NullHost);
    let interp = rt.create_interpreter(host.clone()).expect("interpreter");
    let calls: usize = std::env::var("GEARBOX_MEASURE_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(20000);
    let src = format!("import _gearbox\nfor i in range({calls}):\n    _gearbox.call('PING')\n");
    let t = Instant::now();
    assert!(matches!(interp.run_script(&src, std::time::Duration::from_secs(60)), Ok(ScriptOutcome::Done)));
    let with_calls = t.elapsed();
    let src = format!("import _gearbox\nfor i in range({calls}):\n    pass\n");
    let t = Instant::now();
    assert!(matches!(interp.run_script(&src, std::time::Duration::from_secs(60)), Ok(ScriptOutcome::Done)));
    let empty = t.elapsed();
    println!("host call round trip (call('PING')): {:.2} us", (with_calls - empty).as_secs_f64() * 1e6 / calls as f64);
    for (what, body) in [
        ("one-way log frame", "_gearbox.log('debug', 'x')"),
        ("guest-side decode of an int reply (marshal.loads)", "_m.loads(b'i\\x01\\0\\0\\0')"),
        ("raw os.write of 16 bytes to stderr", "_os.write(2, b'0123456789abcdef')"),
        ("a Python function call with 2 args", "_f(1, 2)"),
    ] {
        let src = format!("import _gearbox, marshal as _m, os as _os\ndef _f(a, b): return a\nfor i in range({calls}):\n    {body}\n");
        let t = Instant::now();
        let ok = matches!(interp.run_script(&src, std::time::Duration::from_secs(60)), Ok(ScriptOutcome::Done));
        println!("{what}: {:.2} us (ok: {ok})", t.elapsed().saturating_sub(empty).as_secs_f64() * 1e6 / calls as f64);
    }
    let t = Instant::now();
    assert!(matches!(interp.run_script("print(1+1)", std::time::Duration::from_secs(5)), Ok(ScriptOutcome::Done)));
    println!("run_script('print(1+1)') on a started instance: {:?}", t.elapsed());
    drop(interp);

    let before = rss_kib();
    let idle: Vec<_> = (0..10).map(|_| shared.new_instance(true).expect("instance")).collect();
    std::thread::sleep(std::time::Duration::from_millis(200));
    println!("RSS per parked (idle) instance: {} KiB", (rss_kib() - before) / idle.len() as u64);
}
