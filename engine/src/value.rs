//! The record model shared by the host, the runtimes and the command layer: a RESP-shaped value.
//!
//! Replies from Redis (`execute()`), results of executions and replies to clients are all this
//! one type, so nothing needs to hold an interpreter lock to pass data between threads.

/// A RESP2-shaped value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Nil,
    Int(i64),
    /// Rendered as a bulk string by the reply layer (RedisGears prints floats with `%lf`).
    Double(f64),
    Bulk(Vec<u8>),
    Status(String),
    Error(String),
    Array(Vec<Value>),
}

impl Value {
    /// A bulk string from anything byte-like.
    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Value {
        Value::Bulk(bytes.into())
    }

    /// An array of bulk strings.
    pub fn bulks<I, B>(items: I) -> Value
    where
        I: IntoIterator<Item = B>,
        B: Into<Vec<u8>>,
    {
        Value::Array(items.into_iter().map(Value::bulk).collect())
    }

    /// A flat `[name, value, name, value, ...]` array, the shape of RedisGears' descriptive replies.
    pub fn pairs<'a>(items: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
        Value::Array(items.into_iter().flat_map(|(name, value)| [Value::bulk(name), value]).collect())
    }

    /// The `[[results], [errors]]` pair that RG.PYEXECUTE and RG.GETRESULTS reply.
    pub fn results_pair(results: &[Value], errors: &[String]) -> Value {
        Value::Array(vec![Value::Array(results.to_vec()), Value::bulks(errors.iter().map(|e| e.as_bytes().to_vec()))])
    }

    /// `%lf` formatting, as RedisGears renders Python floats.
    pub fn format_double(d: f64) -> String {
        format!("{d:.6}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_pair_has_results_then_errors() {
        let v = Value::results_pair(&[Value::bulk("1")], &["boom".to_string()]);
        assert_eq!(
            v,
            Value::Array(vec![Value::Array(vec![Value::Bulk(b"1".to_vec())]), Value::Array(vec![Value::Bulk(b"boom".to_vec())]),])
        );
    }

    #[test]
    fn pairs_flatten_names_and_values() {
        assert_eq!(
            Value::pairs([("a", Value::Int(1)), ("b", Value::Nil)]),
            Value::Array(vec![Value::bulk("a"), Value::Int(1), Value::bulk("b"), Value::Nil])
        );
    }

    #[test]
    fn doubles_use_six_decimals_like_c_printf() {
        assert_eq!(Value::format_double(49.5), "49.500000");
        assert_eq!(Value::format_double(-1.0), "-1.000000");
    }
}
