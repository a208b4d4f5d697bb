//! Sessions as they are persisted (RDB aux data) and replicated (`RG.INNERREGISTER`).
//!
//! gearbox keeps a script's source, not pickled callbacks: a session is rebuilt by running its
//! script again in restore mode, where `execute()` at top level answers from the recorded
//! journal instead of touching Redis and `register()` hands back the saved ids in order. So the
//! globals callbacks see are the registration-time ones, top-level side effects and `run()` are
//! not repeated, and ids survive. The format is versioned; decoding checks everything.

use crate::codec::{self, text_of};
use crate::registrations::RegistrationRegistry;
use crate::requirements::Exported;
use crate::runtime_policy::RuntimeKind;
use crate::session::Recipe;
use crate::value::Value;

const FORMAT_VERSION: i64 = 1;

#[derive(Clone, Debug, PartialEq)]
pub struct SavedSession {
    pub id: String,
    pub description: Option<String>,
    pub recipe: Recipe,
    /// (handle, id) of each live registration: the handle says which `register()` call of the
    /// script made it, so a replay gives every call its old id (and skips unregistered ones).
    pub registrations: Vec<(i64, String)>,
}

impl SavedSession {
    fn to_value(&self) -> Value {
        Value::Array(vec![
            Value::bulk(self.id.clone()),
            self.description.clone().map(Value::bulk).unwrap_or(Value::Nil),
            Value::bulk(self.recipe.source.clone()),
            Value::Array(self.recipe.journal.clone()),
            self.recipe.user.clone().map(Value::bulk).unwrap_or(Value::Nil),
            Value::Array(self.registrations.iter().map(|(h, id)| Value::Array(vec![Value::Int(*h), Value::bulk(id.clone())])).collect()),
            self.recipe.runtime.map(|k| Value::bulk(k.as_str())).unwrap_or(Value::Nil),
            Value::bulks(self.recipe.requirements.iter().map(|r| r.as_bytes().to_vec())),
        ])
    }

    fn from_value(v: &Value) -> Result<SavedSession, String> {
        let Value::Array(parts) = v else { return Err("a saved session is not an array".into()) };
        // The runtime (7th) and the requirements (8th) came later: older sessions have fewer parts.
        let none: &[Value] = &[];
        let (id, desc, source, journal, user, regs, runtime, reqs) = match parts.as_slice() {
            [id, desc, source, Value::Array(journal), user, Value::Array(regs)] => {
                (id, desc, source, journal, user, regs, &Value::Nil, none)
            }
            [id, desc, source, Value::Array(journal), user, Value::Array(regs), runtime] => {
                (id, desc, source, journal, user, regs, runtime, none)
            }
            [id, desc, source, Value::Array(journal), user, Value::Array(regs), runtime, Value::Array(reqs)] => {
                (id, desc, source, journal, user, regs, runtime, reqs.as_slice())
            }
            _ => return Err("a saved session has the wrong shape".into()),
        };
        let runtime = match runtime {
            Value::Nil => None,
            other => Some(RuntimeKind::parse(&text_of(other)).ok_or("a saved session names an unknown runtime")?),
        };
        let opt = |v: &Value| if *v == Value::Nil { None } else { Some(text_of(v)) };
        Ok(SavedSession {
            id: text_of(id),
            description: opt(desc),
            recipe: Recipe {
                source: text_of(source),
                journal: journal.clone(),
                user: opt(user),
                runtime,
                requirements: reqs.iter().map(text_of).collect(),
            },
            registrations: regs
                .iter()
                .map(|r| match r {
                    Value::Array(p) if matches!(p.as_slice(), [Value::Int(_), _]) => {
                        Ok((if let Value::Int(h) = p[0] { h } else { 0 }, text_of(&p[1])))
                    }
                    _ => Err("a saved registration has the wrong shape".to_string()),
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The sessions that own registrations now, each with its ids (oldest first).
pub fn snapshot(registrations: &RegistrationRegistry) -> Vec<SavedSession> {
    let mut out: Vec<SavedSession> = Vec::new();
    for reg in registrations.all().into_iter().filter(|r| !r.made_at_run_time) {
        if let Some(saved) = out.iter_mut().find(|s| reg.session.is(s.recipe.user.as_deref(), &s.id)) {
            saved.registrations.push((reg.spec.handle, reg.id.clone()));
            continue;
        }
        let Some(recipe) = reg.session.recipe() else { continue };
        out.push(SavedSession {
            id: reg.session.id.clone(),
            description: reg.session.description.clone(),
            recipe,
            registrations: vec![(reg.spec.handle, reg.id.clone())],
        });
    }
    out
}

pub fn encode(sessions: &[SavedSession]) -> Vec<u8> {
    encode_with_requirements(sessions, &[])
}

/// Sessions together with the requirements they use (wheels included), so a server that has
/// not installed them (a replica, another machine) can rebuild the sessions.
pub fn encode_with_requirements(sessions: &[SavedSession], requirements: &[Exported]) -> Vec<u8> {
    let mut parts = vec![Value::Int(FORMAT_VERSION), Value::Array(sessions.iter().map(SavedSession::to_value).collect())];
    if !requirements.is_empty() {
        parts.push(Value::Array(requirements.iter().map(Exported::to_value).collect()));
    }
    codec::to_bytes(&Value::Array(parts))
}

pub fn decode(bytes: &[u8]) -> Result<Vec<SavedSession>, String> {
    Ok(decode_with_requirements(bytes)?.0)
}

pub fn decode_with_requirements(bytes: &[u8]) -> Result<(Vec<SavedSession>, Vec<Exported>), String> {
    let value = codec::decode(bytes)?;
    let Value::Array(parts) = value else { return Err("saved sessions are not an array".into()) };
    let sessions = |list: &[Value]| list.iter().map(SavedSession::from_value).collect::<Result<Vec<_>, String>>();
    match parts.as_slice() {
        [Value::Int(FORMAT_VERSION), Value::Array(list)] => Ok((sessions(list)?, Vec::new())),
        [Value::Int(FORMAT_VERSION), Value::Array(list), Value::Array(reqs)] => {
            Ok((sessions(list)?, reqs.iter().map(Exported::from_value).collect::<Result<_, _>>()?))
        }
        [Value::Int(v), ..] => Err(format!("saved sessions use format {v}, this gearbox reads {FORMAT_VERSION}")),
        _ => Err("saved sessions have the wrong shape".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(id: &str) -> SavedSession {
        SavedSession {
            id: id.into(),
            description: Some("d".into()),
            recipe: Recipe {
                source: "GB().register()".into(),
                journal: vec![Value::Int(1), Value::Nil],
                user: Some("default".into()),
                runtime: Some(RuntimeKind::Wasm),
                requirements: vec!["redis==3".into()],
            },
            registrations: vec![(1, "x-1".into()), (3, "x-3".into())],
        }
    }

    #[test]
    fn sessions_round_trip() {
        let all = vec![saved("a"), SavedSession { description: None, ..saved("b") }];
        assert_eq!(decode(&encode(&all)).unwrap(), all);
        let reqs = vec![Exported { name: "redis==3".into(), wheels: vec![("r-3-py3-none-any.whl".into(), vec![7; 10])] }];
        assert_eq!(decode_with_requirements(&encode_with_requirements(&all, &reqs)).unwrap(), (all.clone(), reqs));
        assert_eq!(decode(&encode_with_requirements(&all, &[])).unwrap(), all);
    }

    #[test]
    fn sessions_saved_before_the_runtime_was_recorded_still_load() {
        let mut old = saved("a").to_value();
        if let Value::Array(parts) = &mut old {
            parts.truncate(6);
        }
        let bytes = codec::to_bytes(&Value::Array(vec![Value::Int(FORMAT_VERSION), Value::Array(vec![old])]));
        let loaded = decode(&bytes).unwrap();
        assert_eq!(loaded[0].recipe.runtime, None);
        assert!(loaded[0].recipe.requirements.is_empty());
        assert_eq!(loaded[0].recipe.user.as_deref(), Some("default"));
    }

    #[test]
    fn damaged_or_future_data_is_refused() {
        assert!(decode(b"junk").is_err());
        let future = codec::to_bytes(&Value::Array(vec![Value::Int(99), Value::Array(vec![])]));
        assert!(decode(&future).unwrap_err().contains("format 99"));
        let bad = codec::to_bytes(&Value::Array(vec![Value::Int(1), Value::Array(vec![Value::Int(3)])]));
        assert!(decode(&bad).is_err());
    }
}
