//! Load-time arguments and RG.CONFIGGET/RG.CONFIGSET parameters: gearbox's `mode` and limits,
//! the RedisGears 1.x knobs (spec §3), and any user key ("extra config").
//!
//! Built-in names match case-insensitively on SET and at load, case-sensitively on GET, as in
//! RedisGears. Unknown names are user keys: stored verbatim and readable from scripts.

use gearbox_engine::errors::EngineError;

/// `mode native|wasm`: which runtime gives scripts their interpreters (the engine's kinds).
pub use gearbox_engine::RuntimeKind as Mode;
use gearbox_engine::RuntimePolicy;

struct NumericSpec {
    name: &'static str,
    default: i64,
    min: i64,
    runtime: bool,
}

const NUMERIC: &[NumericSpec] = &[
    NumericSpec { name: "MaxExecutions", default: 1000, min: 1, runtime: true },
    NumericSpec { name: "MaxExecutionsPerRegistration", default: 100, min: 0, runtime: true },
    NumericSpec { name: "ProfileExecutions", default: 0, min: 0, runtime: true },
    NumericSpec { name: "PythonAttemptTraceback", default: 1, min: 0, runtime: true },
    NumericSpec { name: "ExecutionMaxIdleTime", default: 5000, min: 1, runtime: true },
    NumericSpec { name: "PythonInstallReqMaxIdleTime", default: 30000, min: 1, runtime: true },
    NumericSpec { name: "SendMsgRetries", default: 3, min: 0, runtime: true },
    NumericSpec { name: "ExecutionThreads", default: 3, min: 1, runtime: false },
    NumericSpec { name: "OverridePythonAllocators", default: 0, min: 0, runtime: false },
    NumericSpec { name: "DownloadDeps", default: 0, min: 0, runtime: false },
    NumericSpec { name: "ForceDownloadDepsOnEnterprise", default: 0, min: 0, runtime: false },
    NumericSpec { name: "CreateVenv", default: 0, min: 0, runtime: false },
    // gearbox's own: wall-clock limit of a script's top-level code on Redis' main thread.
    NumericSpec { name: "ScriptTimeoutMS", default: 5000, min: 1, runtime: true },
    // gearbox's own: interpreters kept started and ready for the next RG.PYEXECUTE (0: none).
    NumericSpec { name: "InterpreterPoolSize", default: 2, min: 0, runtime: false },
    // wasm mode: linear-memory cap of each script's instance (read when a session starts).
    NumericSpec { name: "WasmMemoryLimitMB", default: 256, min: 16, runtime: true },
    // native mode: memory cap of each script's interpreter (read when a session starts; 0: none).
    NumericSpec { name: "NativeMemoryLimitMB", default: 1024, min: 0, runtime: true },
    // wasm mode: pre-started instances kept ready for the next RG.PYEXECUTE.
    NumericSpec { name: "WasmWarmInstances", default: 2, min: 0, runtime: false },
    // native mode: whether scripts may use sockets (0: refused by the native-mode guards).
    NumericSpec { name: "NativeSockets", default: 0, min: 0, runtime: false },
    // gearbox's own flood limits: log()/print lines per session per second (the rest are
    // dropped and counted in one summary line), and how deep registrations may fire each other
    // through their own writes (a registration whose writes fire registrations whose writes…).
    NumericSpec { name: "LogLinesPerSecond", default: 100, min: 1, runtime: true },
    NumericSpec { name: "MaxTriggerDepth", default: 16, min: 1, runtime: true },
    // gearbox's own per-user quotas (administrators are exempt): live sessions, registrations,
    // time events and UNBLOCKING executions not yet done.
    NumericSpec { name: "MaxSessionsPerUser", default: 1000, min: 1, runtime: true },
    NumericSpec { name: "MaxRegistrationsPerUser", default: 1000, min: 1, runtime: true },
    NumericSpec { name: "MaxTimeEventsPerUser", default: 1000, min: 1, runtime: true },
    NumericSpec { name: "MaxUnblockingExecutionsPerUser", default: 100, min: 1, runtime: true },
    // gearbox's own: how long one REQUIREMENTS install (pip download + install) may take, and how
    // much disk all installs together may use (an install that would pass it is removed).
    NumericSpec { name: "RequirementsInstallTimeoutMS", default: 300000, min: 1000, runtime: true },
    NumericSpec { name: "RequirementsMaxMB", default: 2048, min: 1, runtime: true },
];

const STRINGS: &[(&str, &str)] = &[
    ("DependenciesUrl", ""),
    ("DependenciesSha256", ""),
    ("PythonInstallationDir", ""),
    // wasm mode: the CPython-WASI guest file; empty = the path baked in at build time.
    ("WasmPythonPath", ""),
    // The runtime policy: ACL users (comma-separated) whose sessions may run natively; when set,
    // both runtimes run and everyone else's sessions run in wasm (`engine/src/runtime_policy.rs`).
    ("NativeUsers", ""),
    // REQUIREMENTS (src/host/pip.rs): where installs live (empty: `gearbox-requirements` in the
    // directory Redis runs in, fixed at load), the package index pip uses (`none`: no index),
    // and an optional directory or page of wheels pip looks in too (`--find-links`).
    ("RequirementsDir", ""),
    ("RequirementsIndexUrl", "https://pypi.org/simple"),
    ("RequirementsFindLinks", ""),
    // Who may install a requirement that is not installed yet (a download, disk, a pip run):
    // `admins` (gearbox administrators) or `all`. Anyone may use an installed one.
    ("RequirementsInstallers", "admins"),
];

/// What RG.CONFIGGET answers for one name.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigValue {
    Int(i64),
    Str(String),
    List(Vec<String>),
}

/// What RG.CONFIGSET answers for one pair.
#[derive(Clone, Debug, PartialEq)]
pub enum SetOutcome {
    Set,
    SavedAsExtra,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    numeric: Vec<i64>,
    strings: Vec<String>,
    plugins: Vec<String>,
    extra: Vec<(String, String)>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mode: Mode::Native,
            numeric: NUMERIC.iter().map(|s| s.default).collect(),
            strings: STRINGS.iter().map(|(_, d)| d.to_string()).collect(),
            plugins: Vec::new(),
            extra: Vec::new(),
        }
    }
}

fn numeric_index(name: &str, case_sensitive: bool) -> Option<usize> {
    NUMERIC.iter().position(|s| if case_sensitive { s.name == name } else { s.name.eq_ignore_ascii_case(name) })
}

fn string_index(name: &str, case_sensitive: bool) -> Option<usize> {
    STRINGS.iter().position(|(n, _)| if case_sensitive { *n == name } else { n.eq_ignore_ascii_case(name) })
}

fn parse_number(name: &str, value: &str, min: i64) -> Result<i64, String> {
    let n: i64 = value.trim().parse().map_err(|_| format!("{name} must be an integer, got '{value}'"))?;
    if n < min {
        return Err(format!("{name} must be at least {min}, got {n}"));
    }
    Ok(n)
}

impl Config {
    /// Parse `MODULE LOAD` arguments: name/value pairs. Any error is a sentence for the log.
    pub fn from_load_args(args: &[String]) -> Result<Config, String> {
        if !args.len().is_multiple_of(2) {
            return Err(format!(
                "module arguments must be name/value pairs; '{}' has no value",
                args.last().map(String::as_str).unwrap_or("")
            ));
        }
        let mut config = Config::default();
        for pair in args.chunks(2) {
            let (name, value) = (&pair[0], &pair[1]);
            if name.eq_ignore_ascii_case("mode") {
                config.mode = Mode::parse(value).ok_or_else(|| format!("mode must be 'native' or 'wasm', got '{value}'"))?;
            } else if name.eq_ignore_ascii_case("Plugin") {
                config.plugins.push(value.clone());
            } else {
                config.set_one(name, value, true)?;
            }
        }
        config.runtime_policy()?;
        if !["admins", "all"].contains(&config.text("RequirementsInstallers")) {
            return Err(format!("RequirementsInstallers must be 'admins' or 'all', got '{}'", config.text("RequirementsInstallers")));
        }
        Ok(config)
    }

    fn set_one(&mut self, name: &str, value: &str, at_load: bool) -> Result<SetOutcome, String> {
        if let Some(i) = numeric_index(name, false) {
            let spec = &NUMERIC[i];
            if !at_load && !spec.runtime {
                return Err(EngineError::NotModifiable(name.to_string()).to_string());
            }
            self.numeric[i] = parse_number(spec.name, value, spec.min).map_err(|e| {
                if at_load {
                    e
                } else {
                    EngineError::FailedSetting(name.to_string()).to_string()
                }
            })?;
            return Ok(SetOutcome::Set);
        }
        if let Some(i) = string_index(name, false) {
            if !at_load {
                return Err(EngineError::NotModifiable(name.to_string()).to_string());
            }
            self.strings[i] = value.to_string();
            return Ok(SetOutcome::Set);
        }
        if name.eq_ignore_ascii_case("mode") || name.eq_ignore_ascii_case("Plugin") {
            return Err(EngineError::NotModifiable(name.to_string()).to_string());
        }
        match self.extra.iter_mut().find(|(k, _)| k == name) {
            Some(entry) => entry.1 = value.to_string(),
            None => self.extra.push((name.to_string(), value.to_string())),
        }
        Ok(SetOutcome::SavedAsExtra)
    }

    /// RG.CONFIGSET of one pair; `Err` is the text of the error element.
    pub fn set(&mut self, name: &str, value: &str) -> Result<SetOutcome, String> {
        self.set_one(name, value, false)
    }

    /// RG.CONFIGGET of one name; `Err` is the text of the error element.
    pub fn get(&self, name: &str) -> Result<ConfigValue, String> {
        if let Some(i) = numeric_index(name, true) {
            return Ok(ConfigValue::Int(self.numeric[i]));
        }
        if let Some(i) = string_index(name, true) {
            return Ok(ConfigValue::Str(self.strings[i].clone()));
        }
        if name == "mode" {
            return Ok(ConfigValue::Str(self.mode.as_str().to_string()));
        }
        if name == "Plugin" {
            return Ok(ConfigValue::List(self.plugins.clone()));
        }
        self.extra
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| ConfigValue::Str(v.clone()))
            .ok_or_else(|| EngineError::UnsupportedConfig(name.to_string()).to_string())
    }

    /// `configGet()` from a script: any config as a string, None if unknown.
    pub fn get_as_string(&self, name: &str) -> Option<String> {
        match self.get(name).ok()? {
            ConfigValue::Int(n) => Some(n.to_string()),
            ConfigValue::Str(s) => Some(s),
            ConfigValue::List(l) => Some(l.join(",")),
        }
    }

    fn number(&self, name: &str) -> i64 {
        numeric_index(name, true).map(|i| self.numeric[i]).unwrap_or(0)
    }

    pub fn max_executions(&self) -> usize {
        self.number("MaxExecutions") as usize
    }

    pub fn max_executions_per_registration(&self) -> usize {
        self.number("MaxExecutionsPerRegistration") as usize
    }

    pub fn execution_threads(&self) -> usize {
        self.number("ExecutionThreads") as usize
    }

    pub fn attempt_traceback(&self) -> bool {
        self.number("PythonAttemptTraceback") != 0
    }

    pub fn wasm_warm_instances(&self) -> usize {
        self.number("WasmWarmInstances") as usize
    }

    pub fn wasm_python_path(&self) -> Option<String> {
        string_index("WasmPythonPath", true).map(|i| self.strings[i].clone()).filter(|p| !p.is_empty())
    }

    /// `mode` and `NativeUsers` as the runtime policy (checked at load, so it parses).
    pub fn runtime_policy(&self) -> Result<RuntimePolicy, String> {
        let users = string_index("NativeUsers", true).map(|i| self.strings[i].as_str()).unwrap_or("");
        RuntimePolicy::new(self.mode, users)
    }

    /// Whether any user (not only administrators) may install a requirement.
    pub fn anyone_installs_requirements(&self) -> bool {
        self.text("RequirementsInstallers") == "all"
    }

    /// A string parameter by its exact name ("" for an unknown one).
    pub fn text(&self, name: &str) -> &str {
        string_index(name, true).map(|i| self.strings[i].as_str()).unwrap_or("")
    }

    /// Fix an empty RequirementsDir to `gearbox-requirements` in the directory Redis runs in now
    /// (at load), so a later `CONFIG SET dir` does not move the installs.
    pub fn settle_requirements_dir(&mut self) {
        if let Some(i) = string_index("RequirementsDir", true) {
            if self.strings[i].is_empty() {
                let cwd = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("."));
                self.strings[i] = cwd.join("gearbox-requirements").to_string_lossy().into_owned();
            }
        }
    }

    pub fn interpreter_pool_size(&self) -> usize {
        self.number("InterpreterPoolSize") as usize
    }

    /// A numeric parameter by its exact name (0 for an unknown one).
    pub fn limit(&self, name: &str) -> i64 {
        self.number(name)
    }

    pub fn script_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.number("ScriptTimeoutMS") as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn defaults_match_redisgears() {
        let c = Config::default();
        assert_eq!(c.mode, Mode::Native);
        assert_eq!(c.get("MaxExecutions"), Ok(ConfigValue::Int(1000)));
        assert_eq!(c.get("ExecutionThreads"), Ok(ConfigValue::Int(3)));
        assert_eq!(c.get("PythonAttemptTraceback"), Ok(ConfigValue::Int(1)));
        assert_eq!(c.script_timeout().as_millis(), 5000);
        assert_eq!(c.get("WasmMemoryLimitMB"), Ok(ConfigValue::Int(256)));
        assert_eq!(c.wasm_python_path(), None);
    }

    #[test]
    fn wasm_settings_follow_the_usual_rules() {
        let mut c = Config::from_load_args(&args(&["WasmPythonPath", "/x/p.wasm", "WasmWarmInstances", "0"])).unwrap();
        assert_eq!(c.wasm_python_path().as_deref(), Some("/x/p.wasm"));
        assert_eq!(c.wasm_warm_instances(), 0);
        assert_eq!(c.set("WasmMemoryLimitMB", "64"), Ok(SetOutcome::Set));
        assert_eq!(c.get_as_string("WasmMemoryLimitMB"), Some("64".into()));
        assert!(c.set("WasmPythonPath", "/y").is_err());
        assert!(c.set("WasmWarmInstances", "3").is_err());
    }

    #[test]
    fn load_args_set_builtins_case_insensitively_and_keep_user_keys() {
        let c = Config::from_load_args(&args(&["mode", "wasm", "maxexecutions", "7", "TestConfig", "TestVal"])).unwrap();
        assert_eq!(c.mode, Mode::Wasm);
        assert_eq!(c.max_executions(), 7);
        assert_eq!(c.get("TestConfig"), Ok(ConfigValue::Str("TestVal".into())));
        assert_eq!(c.get_as_string("MaxExecutions"), Some("7".into()));
    }

    #[test]
    fn load_args_refuse_bad_values_and_odd_counts() {
        assert!(Config::from_load_args(&args(&["MaxExecutions", "abc"])).unwrap_err().contains("MaxExecutions"));
        assert!(Config::from_load_args(&args(&["mode", "jvm"])).unwrap_err().contains("mode"));
        assert!(Config::from_load_args(&args(&["ExecutionThreads", "0"])).is_err());
        assert!(Config::from_load_args(&args(&["lonely"])).unwrap_err().contains("lonely"));
    }

    #[test]
    fn configset_texts_follow_redisgears() {
        let mut c = Config::default();
        assert_eq!(c.set("maxExecutions", "5"), Ok(SetOutcome::Set));
        assert_eq!(c.max_executions(), 5);
        assert_eq!(c.set("ExecutionThreads", "5"), Err("Config value ExecutionThreads not modifiable at runtime".into()));
        assert_eq!(c.set("MaxExecutions", "x"), Err("Failed setting config value MaxExecutions".into()));
        assert_eq!(c.set("Mine", "v"), Ok(SetOutcome::SavedAsExtra));
        assert_eq!(c.get("Mine"), Ok(ConfigValue::Str("v".into())));
        assert_eq!(c.get("maxexecutions"), Err("Unsupported config parameter: maxexecutions".into()));
        assert_eq!(c.get_as_string("nope"), None);
    }
}
