//! Per-instance expansion in `command`, `cwd` and `env` values: `{instance}` (the replica's
//! number, from 0), `{name}` (the program's name, as `SUPERVISE_NAME`) and integer arithmetic on
//! `instance` (`{8000 + instance}`, `{instance * 10 + 3}`: `+`, `-`, `*`, parentheses), so that
//! replicas of a server that cannot share a port each take their own.
//!
//! A template is strict, as Python's `str.format` and Rust's `format!` are: `{{` and `}}` are a
//! literal brace, anything else in braces must be an expression, and a config with a bad one is
//! refused at load with its line. Single-command mode cannot be as strict: its argv was written
//! for a shell, and `find -exec {} ;`, a JSON argument or an awk program hold braces that are no
//! template. There, [`lenient`] turns an argument into a template by keeping only the braces
//! that hold a valid expression (`{instance}`, `{name}`, `{8000 + instance}`) and escaping every
//! other brace; `{{instance}}` there stays `{instance}` as written.

use std::fmt::Write as _;

/// What an expression may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vars<'a> {
    pub name: &'a str,
    pub instance: u32,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece<'t> {
    Text(&'t str),
    /// `{{` or `}}`.
    Brace(char),
    Expr(Expr),
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expr {
    Name,
    Instance,
    Int(i64),
    Add(Box<Expr>, Box<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    Mul(Box<Expr>, Box<Expr>),
}

const HELP: &str = "use {instance}, {name}, integer arithmetic on instance such as \
                    {8000 + instance}, and {{ or }} for a literal brace";

/// Splits a strict template into pieces.
fn parse(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        let Some(at) = rest.find(['{', '}']) else {
            out.push(Piece::Text(rest));
            break;
        };
        if at > 0 {
            out.push(Piece::Text(&rest[..at]));
        }
        let tail = &rest[at..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push(Piece::Brace(if tail.starts_with('{') { '{' } else { '}' }));
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(format!(
                "a lone `}}` in {template:?}: write `}}}}` for a literal brace; {HELP}"
            ));
        }
        let Some(end) = tail.find('}') else {
            return Err(format!("`{{` without its `}}` in {template:?}; {HELP}"));
        };
        let inner = &tail[1..end];
        let expr = expression(inner).map_err(|e| format!("{e} in `{{{inner}}}`; {HELP}"))?;
        out.push(Piece::Expr(expr));
        rest = &tail[end + 1..];
    }
    Ok(out)
}

/// Parses what is between the braces.
fn expression(text: &str) -> Result<Expr, String> {
    let tokens = tokens(text)?;
    if tokens.is_empty() {
        return Err("an empty `{}`".into());
    }
    let mut p = Parser { tokens, at: 0 };
    let e = p.sum()?;
    if p.at != p.tokens.len() {
        return Err(format!("unexpected `{}`", p.tokens[p.at]));
    }
    if e != Expr::Name && contains_name(&e) {
        return Err("`name` is text: it takes no arithmetic".into());
    }
    Ok(e)
}

fn contains_name(e: &Expr) -> bool {
    match e {
        Expr::Name => true,
        Expr::Instance | Expr::Int(_) => false,
        Expr::Add(a, b) | Expr::Sub(a, b) | Expr::Mul(a, b) => contains_name(a) || contains_name(b),
    }
}

fn tokens(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_whitespace() {
            chars.next();
        } else if matches!(c, '+' | '-' | '*' | '(' | ')') {
            out.push(c.to_string());
            chars.next();
        } else if c.is_ascii_alphanumeric() || c == '_' {
            let mut word = String::new();
            while let Some(&c) = chars
                .peek()
                .filter(|c| c.is_ascii_alphanumeric() || **c == '_')
            {
                word.push(c);
                chars.next();
            }
            out.push(word);
        } else {
            return Err(format!("`{c}` is not part of an expression"));
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<String>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&str> {
        self.tokens.get(self.at).map(String::as_str)
    }

    fn sum(&mut self) -> Result<Expr, String> {
        let mut e = self.product()?;
        while let Some(op @ ("+" | "-")) = self.peek() {
            let add = op == "+";
            self.at += 1;
            let r = self.product()?;
            e = if add {
                Expr::Add(Box::new(e), Box::new(r))
            } else {
                Expr::Sub(Box::new(e), Box::new(r))
            };
        }
        Ok(e)
    }

    fn product(&mut self) -> Result<Expr, String> {
        let mut e = self.atom()?;
        while self.peek() == Some("*") {
            self.at += 1;
            let r = self.atom()?;
            e = Expr::Mul(Box::new(e), Box::new(r));
        }
        Ok(e)
    }

    fn atom(&mut self) -> Result<Expr, String> {
        let Some(t) = self.peek().map(str::to_owned) else {
            return Err("an expression ends too soon".into());
        };
        self.at += 1;
        match t.as_str() {
            "instance" => Ok(Expr::Instance),
            "name" => Ok(Expr::Name),
            "(" => {
                let e = self.sum()?;
                if self.peek() == Some(")") {
                    self.at += 1;
                    Ok(e)
                } else {
                    Err("`(` without its `)`".into())
                }
            }
            t if t.bytes().all(|b| b.is_ascii_digit()) => t
                .parse()
                .map(Expr::Int)
                .map_err(|_| format!("{t} is too large")),
            t if t
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_') =>
            {
                Err(format!("unknown name `{t}`"))
            }
            t => Err(format!("unexpected `{t}`")),
        }
    }
}

fn eval(e: &Expr, v: &Vars<'_>) -> Result<i64, String> {
    let overflow = || "the arithmetic overflows".to_owned();
    match e {
        Expr::Instance => Ok(i64::from(v.instance)),
        Expr::Int(n) => Ok(*n),
        // Never reached: `name` takes no arithmetic (see `expression`).
        Expr::Name => Err("`name` is text: it takes no arithmetic".into()),
        Expr::Add(a, b) => eval(a, v)?.checked_add(eval(b, v)?).ok_or_else(overflow),
        Expr::Sub(a, b) => eval(a, v)?.checked_sub(eval(b, v)?).ok_or_else(overflow),
        Expr::Mul(a, b) => eval(a, v)?.checked_mul(eval(b, v)?).ok_or_else(overflow),
    }
}

/// Expands a strict template for one instance.
///
/// # Errors
/// A brace that is not doubled nor around a valid expression, an unknown name, or arithmetic
/// that overflows; the message says which and how to write it.
pub fn expand(template: &str, vars: &Vars<'_>) -> Result<String, String> {
    if !template.contains(['{', '}']) {
        return Ok(template.to_owned());
    }
    let mut out = String::with_capacity(template.len());
    for piece in parse(template)? {
        match piece {
            Piece::Text(t) => out.push_str(t),
            Piece::Brace(c) => out.push(c),
            Piece::Expr(Expr::Name) => out.push_str(vars.name),
            Piece::Expr(e) => {
                let _ = write!(out, "{}", eval(&e, vars)?);
            }
        }
    }
    Ok(out)
}

/// Checks a strict template for every instance of a program of `replicas`.
///
/// # Errors
/// As [`expand`].
pub fn check(template: &str, name: &str, replicas: u32) -> Result<(), String> {
    if !template.contains(['{', '}']) {
        return Ok(());
    }
    parse(template)?;
    for instance in 0..replicas {
        expand(template, &Vars { name, instance })
            .map_err(|e| format!("for instance {instance}: {e}"))?;
    }
    Ok(())
}

/// A literal text as a template that expands to itself (an `env_file`'s values).
#[must_use]
pub fn escape(text: &str) -> String {
    text.replace('{', "{{").replace('}', "}}")
}

/// A single-command argument as a template: a `{…}` around a valid expression expands, `{{…}}`
/// around one is that text in single braces, and every other brace is literal.
#[must_use]
pub fn lenient(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(at) = rest.find(['{', '}']) {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(inner) = tail.strip_prefix("{{").and_then(|t| {
            let end = t.find("}}")?;
            Some(&t[..end]).filter(|i| !i.contains(['{', '}']) && expression(i).is_ok())
        }) {
            // `{{instance}}`: kept as `{instance}`, escaped.
            let _ = write!(out, "{{{{{inner}}}}}");
            rest = &tail[inner.len() + 4..];
            continue;
        }
        if let Some(inner) = tail.strip_prefix('{').and_then(|t| {
            let end = t.find('}')?;
            Some(&t[..end]).filter(|i| !i.contains('{') && expression(i).is_ok())
        }) {
            let _ = write!(out, "{{{inner}}}");
            rest = &tail[inner.len() + 2..];
            continue;
        }
        out.push_str(if tail.starts_with('{') { "{{" } else { "}}" });
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

/// `spec` as instance `instance` runs it: its command, cwd and env values expanded.
///
/// # Errors
/// As [`expand`] (a plan's templates are checked when it is made: arithmetic that overflows
/// for an instance a reload added is the one error left).
pub fn instance_spec(
    spec: &super::ProgramSpec,
    instance: u32,
) -> Result<super::ProgramSpec, String> {
    let vars = Vars {
        name: &spec.name,
        instance,
    };
    let mut own = spec.clone();
    for arg in &mut own.command {
        *arg = expand(arg, &vars)?;
    }
    if let Some(cwd) = &mut own.cwd {
        if let Some(t) = cwd.to_str() {
            *cwd = expand(t, &vars)?.into();
        }
    }
    for (_, v) in &mut own.env {
        *v = expand(v, &vars)?;
    }
    Ok(own)
}

#[cfg(test)]
mod tests;
