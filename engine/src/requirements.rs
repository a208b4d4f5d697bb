//! Requirements (`RG.PYEXECUTE … REQUIREMENTS pkg==ver`): what an installed requirement is, the
//! server's dictionary of them, and how RG.PYDUMPREQS shows one.
//!
//! A requirement is named by the exact text the user gave (`redis==3`, `redis>=2,<=3`), as in
//! RedisGears. Each one is installed into a directory of its own (the host does the installing
//! with pip; the engine knows nothing of it), and a session sees only the directories of the
//! requirements it asked for, so two sessions can use two versions of one package. Sessions hold
//! their requirements by `Arc`: the dictionary keeps the newest install of each name, and an older
//! install (replaced by FORCE_REINSTALL_REQUIREMENTS) lives on while a session still uses it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use crate::value::Value;

/// The version of RG.PYDUMPREQS' record, as RedisGears numbers it.
pub const GEAR_REQ_VERSION: i64 = 1;

/// One installed requirement.
#[derive(Clone, Debug, PartialEq)]
pub struct Requirement {
    /// The text the user gave.
    pub name: String,
    /// The directory it is installed in (what the session's imports see).
    pub path: String,
    /// The wheels pip installed for it (its own and its dependencies'), file names.
    pub wheels: Vec<String>,
    /// Files of compiled code in the install (`.so`), relative to `path`: a wasm session cannot
    /// use such a requirement.
    pub compiled: Vec<String>,
}

impl Requirement {
    /// Whether a wasm session can use it (only pure-Python code).
    pub fn is_pure_python(&self) -> bool {
        self.compiled.is_empty()
    }
}

/// The server's requirements by name: the install new sessions get.
#[derive(Default)]
pub struct RequirementRegistry {
    by_name: Mutex<BTreeMap<String, Arc<Requirement>>>,
}

impl RequirementRegistry {
    pub fn get(&self, name: &str) -> Option<Arc<Requirement>> {
        self.lock().get(name).cloned()
    }

    /// Make `req` the install of its name (an older one lives on in the sessions using it).
    pub fn put(&self, req: Arc<Requirement>) {
        self.lock().insert(req.name.clone(), req);
    }

    pub fn all(&self) -> Vec<Arc<Requirement>> {
        self.lock().values().cloned().collect()
    }

    /// Whether `req` is the install new sessions of its name get.
    pub fn is_current(&self, req: &Arc<Requirement>) -> bool {
        self.lock().get(&req.name).is_some_and(|r| Arc::ptr_eq(r, req))
    }

    /// RG.PYDUMPREQS' record of `req`: `users` is how many sessions hold it.
    pub fn dump(&self, req: &Arc<Requirement>, users: usize, os: &str) -> Value {
        let yes_no = |b: bool| Value::bulk(if b { "yes" } else { "no" });
        Value::Array(vec![
            Value::bulk("GearReqVersion"),
            Value::Int(GEAR_REQ_VERSION),
            Value::bulk("Name"),
            Value::bulk(req.name.clone()),
            Value::bulk("IsDownloaded"),
            yes_no(true),
            Value::bulk("IsInstalled"),
            yes_no(true),
            Value::bulk("CompiledOs"),
            Value::bulk(os),
            Value::bulk("Wheels"),
            Value::bulks(req.wheels.iter().map(|w| w.as_bytes().to_vec())),
            Value::bulk("Path"),
            Value::bulk(req.path.clone()),
            Value::bulk("RefCount"),
            Value::Int(users as i64),
            Value::bulk("IsInReqDictionary"),
            yes_no(self.is_current(req)),
        ])
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Arc<Requirement>>> {
        self.by_name.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// RG.PYDUMPREQS' `CompiledOs`: the platform requirements are installed for.
pub fn compiled_os() -> String {
    format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH)
}

/// Whether `text` may be handed to pip as one requirement: a name with optional extras, version
/// specifiers and markers, never an option (`-r file`, `--index-url …`), a path or a URL.
pub fn is_valid_requirement(text: &str) -> bool {
    let name_end = text.find(|c: char| !(c.is_ascii_alphanumeric() || "._-".contains(c))).unwrap_or(text.len());
    let name = &text[..name_end];
    let starts_well = name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest = &text[name_end..];
    let rest_ok = rest.chars().all(|c| c.is_ascii_alphanumeric() || " .,_-=<>!~*[]();'\"".contains(c));
    starts_well && rest_ok && text.len() <= 256 && !text.contains("://") && !text.contains(" @")
}

/// A requirement with its wheels, as RG.PYEXPORTREQ hands it out and RG.PYIMPORTREQ, replicas
/// and RDB files take it back.
#[derive(Clone, Debug, PartialEq)]
pub struct Exported {
    pub name: String,
    /// (file name, bytes) of each wheel.
    pub wheels: Vec<(String, Vec<u8>)>,
}

const EXPORT_TAG: &str = "gearbox-requirement";
const EXPORT_VERSION: i64 = 1;

impl Exported {
    pub fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::bulk(EXPORT_TAG),
            Value::Int(EXPORT_VERSION),
            Value::bulk(self.name.clone()),
            Value::Array(self.wheels.iter().map(|(n, b)| Value::Array(vec![Value::bulk(n.clone()), Value::Bulk(b.clone())])).collect()),
        ])
    }

    /// Checks the shape, the requirement's name and every wheel's file name.
    pub fn from_value(v: &Value) -> Result<Exported, String> {
        let Value::Array(parts) = v else { return Err("not an exported requirement".into()) };
        let [Value::Bulk(tag), Value::Int(version), Value::Bulk(name), Value::Array(wheels)] = parts.as_slice() else {
            return Err("not an exported requirement".into());
        };
        if tag.as_slice() != EXPORT_TAG.as_bytes() {
            return Err("not an exported requirement".into());
        }
        if *version != EXPORT_VERSION {
            return Err(format!("an exported requirement of format {version}; this gearbox reads {EXPORT_VERSION}"));
        }
        let name = String::from_utf8(name.clone()).ok().filter(|n| is_valid_requirement(n)).ok_or("a bad requirement name")?;
        let wheels = wheels
            .iter()
            .map(|w| match w {
                Value::Array(p) => match p.as_slice() {
                    [Value::Bulk(n), Value::Bulk(b)] => {
                        let n = String::from_utf8(n.clone()).ok().filter(|n| is_valid_wheel_name(n)).ok_or("a bad wheel file name")?;
                        Ok((n, b.clone()))
                    }
                    _ => Err("a bad wheel entry".to_string()),
                },
                _ => Err("a bad wheel entry".to_string()),
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Exported { name, wheels })
    }
}

/// Whether `name` may be a wheel's file name in an install directory: one plain file name.
pub fn is_valid_wheel_name(name: &str) -> bool {
    name.len() <= 255
        && name.ends_with(".whl")
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "._+-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(name: &str, path: &str) -> Arc<Requirement> {
        Arc::new(Requirement { name: name.into(), path: path.into(), wheels: vec!["a-1-py3-none-any.whl".into()], compiled: vec![] })
    }

    #[test]
    fn the_newest_install_of_a_name_is_current_and_the_older_lives_on() {
        let reg = RequirementRegistry::default();
        let old = req("redis==3", "/r/a/1");
        reg.put(old.clone());
        assert!(reg.is_current(&old));
        let new = req("redis==3", "/r/a/2");
        reg.put(new.clone());
        assert!(!reg.is_current(&old) && reg.is_current(&new));
        assert_eq!(reg.get("redis==3").unwrap().path, "/r/a/2");
        assert_eq!(old.path, "/r/a/1");
        assert_eq!(reg.all().len(), 1);
    }

    #[test]
    fn dump_has_redisgears_shape() {
        let reg = RequirementRegistry::default();
        let r = req("redis==3", "/r/a/1");
        reg.put(r.clone());
        let Value::Array(items) = reg.dump(&r, 2, "linux-x64") else { panic!() };
        assert_eq!(items.len(), 18);
        assert_eq!(items[3], Value::bulk("redis==3"));
        assert_eq!(items[5], Value::bulk("yes"));
        assert_eq!(items[7], Value::bulk("yes"));
        assert_eq!(items[13], Value::bulk("/r/a/1"));
        assert_eq!(items[15], Value::Int(2));
        assert_eq!(items[17], Value::bulk("yes"));
    }

    #[test]
    fn only_plain_requirements_reach_pip() {
        for ok in ["redis", "redis==3", "redis>=2,<=3", "Foo.Bar_baz-1 ~= 1.0", "pkg[extra]==1; python_version > '3'"] {
            assert!(is_valid_requirement(ok), "{ok}");
        }
        for bad in ["", "-r/etc/passwd", "--index-url=http://x", "./local", "/abs/path", "pkg @ https://x/y.whl", "http://x", "a\nb", "a|b"]
        {
            assert!(!is_valid_requirement(bad), "{bad}");
        }
        assert!(!is_valid_requirement(&"a".repeat(300)));
    }

    #[test]
    fn exports_round_trip_and_damage_is_refused() {
        let e = Exported { name: "p==1".into(), wheels: vec![("p-1-py3-none-any.whl".into(), vec![0, 1, 2])] };
        let bytes = crate::codec::to_bytes(&e.to_value());
        assert_eq!(Exported::from_value(&crate::codec::decode(&bytes).unwrap()).unwrap(), e);
        for cut in 0..bytes.len() {
            assert!(crate::codec::decode(&bytes[..cut]).map_or(true, |v| Exported::from_value(&v).is_err()), "{cut}");
        }
        let evil = Exported { name: "p==1".into(), wheels: vec![("../../x.whl".into(), vec![])] };
        assert!(Exported::from_value(&evil.to_value()).unwrap_err().contains("wheel file name"));
        let evil = Exported { name: "--index-url=x".into(), wheels: vec![] };
        assert!(Exported::from_value(&evil.to_value()).is_err());
    }

    #[test]
    fn wheel_names_are_plain_file_names() {
        assert!(is_valid_wheel_name("redis-3.5.3-py2.py3-none-any.whl"));
        for bad in ["../x.whl", "a/b.whl", ".whl", "x.zip", "x y.whl", "..whl"] {
            assert!(!is_valid_wheel_name(bad), "{bad}");
        }
    }

    #[test]
    fn pure_python_means_no_compiled_files() {
        let mut r = Requirement { name: "x".into(), path: "/p".into(), wheels: vec![], compiled: vec![] };
        assert!(r.is_pure_python());
        r.compiled.push("x/_speedups.cpython-313-x86_64-linux-gnu.so".into());
        assert!(!r.is_pure_python());
    }
}
