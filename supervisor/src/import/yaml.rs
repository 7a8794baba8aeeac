//! YAML to a JSON value, through yaml-rust2's event parser: the loader's tree would copy an
//! alias's whole node each time it is named, so a few lines of aliases of aliases (the
//! "billion laughs") would take all memory. Here every node counts, aliases' copies included,
//! against a budget.

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Nodes a document may have, aliases' copies counted: far past any ecosystem file.
const MAX_NODES: usize = 100_000;
/// Nesting deeper than this is refused.
const MAX_DEPTH: usize = 64;

/// A node being built: a sequence, or a mapping and the key waiting for its value.
enum Open {
    Seq(Vec<Value>, usize),
    Map(Map<String, Value>, Option<String>, usize),
}

struct Builder {
    stack: Vec<Open>,
    anchors: std::collections::HashMap<usize, (Value, usize)>,
    docs: Vec<Value>,
    nodes: usize,
    error: Option<(usize, String)>,
}

/// How many nodes `v` holds.
fn count(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(count).sum::<usize>(),
        Value::Object(m) => 1 + m.values().map(count).sum::<usize>(),
        _ => 1,
    }
}

/// A plain scalar's value by YAML 1.2's core schema.
fn plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ => {
            if let Ok(i) = s.parse::<i64>() {
                return Value::Number(i.into());
            }
            if s.bytes().any(|b| b.is_ascii_digit()) && !s.contains(['_', ' ']) {
                if let Some(n) = s.parse::<f64>().ok().and_then(Number::from_f64) {
                    return Value::Number(n);
                }
            }
            Value::String(s.to_owned())
        }
    }
}

/// A key as a string: YAML allows any node as a key, JSON only strings.
fn key_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Builder {
    fn fail(&mut self, mark: Marker, m: String) {
        if self.error.is_none() {
            self.error = Some((mark.line(), m));
        }
    }

    /// Puts a finished node where it belongs.
    fn put(&mut self, v: Value, anchor: usize, size: usize, mark: Marker) {
        self.nodes = self.nodes.saturating_add(size);
        if self.nodes > MAX_NODES {
            self.fail(
                mark,
                format!("more than {MAX_NODES} nodes (aliases counted as copies)"),
            );
            return;
        }
        if anchor > 0 {
            self.anchors.insert(anchor, (v.clone(), size));
        }
        match self.stack.last_mut() {
            None => self.docs.push(v),
            Some(Open::Seq(items, _)) => items.push(v),
            Some(Open::Map(map, key, _)) => match key.take() {
                None => *key = Some(key_text(&v)),
                Some(k) => {
                    map.insert(k, v);
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(s, style, anchor, _) => {
                let v = if style == TScalarStyle::Plain {
                    plain(&s)
                } else {
                    Value::String(s)
                };
                self.put(v, anchor, 1, mark);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    self.fail(mark, format!("nested more than {MAX_DEPTH} deep"));
                    return;
                }
                self.stack.push(if matches!(ev, Event::SequenceStart(..)) {
                    Open::Seq(Vec::new(), anchor)
                } else {
                    Open::Map(Map::new(), None, anchor)
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (v, anchor) = match self.stack.pop() {
                    Some(Open::Seq(items, a)) => (Value::Array(items), a),
                    Some(Open::Map(map, _, a)) => (Value::Object(map), a),
                    None => return,
                };
                // The children were counted as they came.
                self.nodes = self.nodes.saturating_sub(count(&v) - 1);
                let size = count(&v);
                self.put(v, anchor, size, mark);
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some((v, size)) => self.put(v, 0, size, mark),
                None => self.fail(mark, "an alias of no anchor".into()),
            },
            _ => {}
        }
    }
}

/// Parses the first document of `text`. `Err((line, message))`.
pub fn parse(text: &str) -> Result<Value, (usize, String)> {
    let mut b = Builder {
        stack: Vec::new(),
        anchors: std::collections::HashMap::new(),
        docs: Vec::new(),
        nodes: 0,
        error: None,
    };
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut b, false) {
        return Err((e.marker().line(), e.info().to_owned()));
    }
    if let Some(e) = b.error {
        return Err(e);
    }
    Ok(b.docs.into_iter().next().unwrap_or(Value::Null))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_an_ecosystem_file() {
        let text = "apps:\n  - name: api\n    script: ./api.js\n    instances: 4\n    env:\n      PORT: \"3000\"\n      DEBUG: false\n      RATIO: 0.5\n    args: [--x, '1']\n";
        assert_eq!(
            parse(text),
            Ok(
                json!({"apps": [{"name": "api", "script": "./api.js", "instances": 4,
                "env": {"PORT": "3000", "DEBUG": false, "RATIO": 0.5}, "args": ["--x", "1"]}]})
            )
        );
    }

    #[test]
    fn anchors_and_aliases_copy() {
        let text = "base: &b {a: 1}\nx: *b\n";
        assert_eq!(parse(text), Ok(json!({"base": {"a": 1}, "x": {"a": 1}})));
    }

    #[test]
    fn refuses_a_billion_laughs() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let e = parse(&text).expect_err("refused");
        assert!(e.1.contains("nodes"), "{e:?}");
    }

    #[test]
    fn errors_carry_a_line() {
        let e = parse("apps:\n  - name: [unclosed\n").expect_err("bad");
        assert!(e.0 >= 2, "{e:?}");
        let e = parse(&"[".repeat(200)).expect_err("deep");
        assert!(e.1.contains("deep") || e.0 >= 1, "{e:?}");
    }

    #[test]
    fn plain_scalars_by_the_core_schema() {
        let table = [
            ("~", json!(null)),
            ("true", json!(true)),
            ("42", json!(42)),
            ("-7", json!(-7)),
            ("1.5", json!(1.5)),
            ("150M", json!("150M")),
            ("yes", json!("yes")),
            ("1_000", json!("1_000")),
        ];
        for (s, want) in table {
            assert_eq!(plain(s), want, "{s}");
        }
    }
}
