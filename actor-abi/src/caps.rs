//! Capabilities with values, and the requirements matched against them (Thespian's
//! `name → value` capabilities and `requireCapability(name, value)`, with comparisons).
//!
//! Both stay plain strings everywhere they travel (node lists, the manifest, `CreateSpec`,
//! the convention's member records), so a node, a plugin or a zip from before values existed
//! works unchanged: a plain name is a capability whose value is `true`.
//!
//! - A **capability** is `name` or `name=value` (`gpu=A100`, `mem=64`, `morse`).
//! - A **requirement** is `name` (present and not false: its value is not `false`, `0` or
//!   empty, as Thespian's truthiness), or `name OP value` with `OP` one of `=` (also `==`),
//!   `!=`, `>=`, `<=`, `>`, `<`.
//!   - `=` and `!=` compare numerically when both sides are numbers (`mem=64` matches
//!     `mem=64.0`), else as exact, case-sensitive strings. `!=` also holds when the node lacks
//!     the capability.
//!   - `>=`, `<=`, `>` and `<` compare numbers only: a requirement whose value is not a number
//!     is refused when it is parsed, and a capability whose value is not a number (or that is
//!     missing) does not satisfy it.
//! - Names are case-sensitive and cannot contain `=`, `<`, `>`, `!` or `,`; surrounding
//!   spaces are trimmed (`Caesar cipher` is one name).
//! - A capability's value obeys the rules of a requirement's value, so that some requirement
//!   can always name it: no `=`, `<`, `>`, `!` or `,` (`a=b=c` is refused, not stored).
//! - Neither holds a control character, a name is at most [`MAX_NAME_BYTES`] and a value at
//!   most [`MAX_VALUE_BYTES`]; an error shows only the first [`SHOWN_CHARS`] characters of
//!   what it refuses.
//!
//! ```
//! use troupe_actor_abi::caps::{satisfies, value_of};
//! let caps = vec!["gpu=A100".to_string(), "mem=64".to_string(), "morse".to_string()];
//! assert!(satisfies(&caps, "mem>=32"));
//! assert!(satisfies(&caps, "gpu=A100") && satisfies(&caps, "morse"));
//! assert!(!satisfies(&caps, "mem>64") && !satisfies(&caps, "gpu=H100"));
//! assert_eq!(value_of(&caps, "gpu"), Some("A100"));
//! assert_eq!(value_of(&caps, "morse"), Some("true"));
//! ```

use std::fmt;

/// The value of a capability declared by name only.
pub const PRESENT: &str = "true";

/// Characters that end a name (they start an operator, or separate list entries).
const RESERVED: &[char] = &['=', '<', '>', '!', ','];

/// The longest capability name, in bytes. Names are identifiers a person types into
/// requirements and reads in `status`; 128 leaves room for descriptive ones (`Caesar cipher`,
/// `64bit encoder`) while every name still fits on a line of a node list.
pub const MAX_NAME_BYTES: usize = 128;

/// The longest capability value, in bytes: room for a model name, a version string or a path
/// (`gpu=NVIDIA A100-SXM4-80GB`), and still a bounded share of every member record and node
/// list the convention sends.
pub const MAX_VALUE_BYTES: usize = 256;

/// How much of a refused entry an error repeats: enough to recognise it, never a flood.
pub const SHOWN_CHARS: usize = 48;

/// `s` as an error shows it: in full when short, else its first [`SHOWN_CHARS`] characters
/// and its length.
/// ```
/// use troupe_actor_abi::caps::shown;
/// assert_eq!(shown("gpu=A100"), "gpu=A100");
/// assert!(shown(&"x".repeat(100_000)).ends_with("… (100000 bytes)"));
/// ```
pub fn shown(s: &str) -> String {
    if s.chars().count() <= SHOWN_CHARS {
        return s.to_string();
    }
    let head: String = s.chars().take(SHOWN_CHARS).collect();
    format!("{head}… ({} bytes)", s.len())
}

/// A capability or requirement that cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapError(pub String);

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CapError {}

fn check_name(name: &str, whole: &str) -> Result<(), CapError> {
    let whole = shown(whole);
    if name.is_empty() {
        return Err(CapError(format!("`{whole}`: the capability name is empty")));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(CapError(format!(
            "`{whole}`: a capability name is at most {MAX_NAME_BYTES} bytes, this one has {}",
            name.len()
        )));
    }
    if let Some(c) = name.chars().find(|c| RESERVED.contains(c)) {
        return Err(CapError(format!("`{whole}`: a capability name cannot contain `{c}`")));
    }
    if name.chars().any(char::is_control) {
        return Err(CapError(format!(
            "`{}`: a capability name cannot contain a control character",
            whole.escape_debug()
        )));
    }
    Ok(())
}

/// The rules a value obeys in a requirement and in a capability alike (so that a requirement
/// can name every value a node may hold): not empty, bounded, no operator, comma or control
/// character.
fn check_value(value: &str, whole: &str) -> Result<(), CapError> {
    let whole = shown(whole);
    if value.len() > MAX_VALUE_BYTES {
        return Err(CapError(format!(
            "`{whole}`: a capability value is at most {MAX_VALUE_BYTES} bytes, this one has {}",
            value.len()
        )));
    }
    if let Some(c) = value.chars().find(|c| RESERVED.contains(c)) {
        return Err(CapError(format!(
            "`{whole}`: a value cannot contain `{c}` (no requirement could name it)"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(CapError(format!(
            "`{}`: a value cannot contain a control character",
            whole.escape_debug()
        )));
    }
    Ok(())
}

/// One capability, parsed: `(name, value)`, the value [`PRESENT`] for a plain name.
/// ```
/// use troupe_actor_abi::caps::parse_capability;
/// assert_eq!(parse_capability(" gpu = A100 ").unwrap(), ("gpu".into(), "A100".into()));
/// assert_eq!(parse_capability("morse").unwrap(), ("morse".into(), "true".into()));
/// assert!(parse_capability("mem>=3").is_err() && parse_capability("gpu=").is_err());
/// ```
pub fn parse_capability(s: &str) -> Result<(String, String), CapError> {
    let whole = s.trim();
    let (name, value) = match whole.split_once('=') {
        Some((n, v)) => (n.trim(), v.trim()),
        None => (whole, PRESENT),
    };
    check_name(name, whole)?;
    if value.is_empty() {
        return Err(CapError(format!(
            "`{}`: the value is empty (write `{name}` alone for a plain capability)",
            shown(whole)
        )));
    }
    check_value(value, whole)?;
    Ok((name.to_string(), value.to_string()))
}

/// A capability as written in lists: `name` for [`PRESENT`], else `name=value`.
/// ```
/// use troupe_actor_abi::caps::render;
/// assert_eq!(render("morse", "true"), "morse");
/// assert_eq!(render("mem", "64"), "mem=64");
/// ```
pub fn render(name: &str, value: &str) -> String {
    if value == PRESENT {
        name.to_string()
    } else {
        format!("{name}={value}")
    }
}

/// A comma-separated list (`troupe start PORT "gpu=A100,mem=64,morse"`), each entry checked
/// and written back as [`render`] does; empty entries are skipped, a later entry for the same
/// name wins.
/// ```
/// use troupe_actor_abi::caps::parse_list;
/// assert_eq!(parse_list("morse, Caesar cipher,,mem = 64").unwrap(), ["morse", "Caesar cipher", "mem=64"]);
/// assert!(parse_list("a,b>2").is_err());
/// ```
pub fn parse_list(s: &str) -> Result<Vec<String>, CapError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for entry in s.split(',').filter(|e| !e.trim().is_empty()) {
        let (name, value) = parse_capability(entry)?;
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => out.push((name, value)),
        }
    }
    Ok(out.iter().map(|(n, v)| render(n, v)).collect())
}

/// The value of capability `name` in a list of capabilities (as [`parse_list`] writes them,
/// or plain names from older nodes); [`PRESENT`] for a plain name.
pub fn value_of<'a>(caps: &'a [String], name: &str) -> Option<&'a str> {
    caps.iter().find_map(|c| match c.split_once('=') {
        Some((n, v)) if n.trim() == name => Some(v.trim()),
        None if c.trim() == name => Some(PRESENT),
        _ => None,
    })
}

/// A comparison in a requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// `name`: present and truthy.
    Present,
    /// `=` or `==`.
    Eq,
    /// `!=`.
    Ne,
    /// `>=`.
    Ge,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `<`.
    Lt,
}

impl Op {
    fn symbol(self) -> &'static str {
        match self {
            Op::Present => "",
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Ge => ">=",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Lt => "<",
        }
    }

    fn numeric_only(self) -> bool {
        matches!(self, Op::Ge | Op::Le | Op::Gt | Op::Lt)
    }
}

/// A parsed requirement.
#[derive(Clone, Debug, PartialEq)]
pub struct Requirement {
    /// The capability's name.
    pub name: String,
    /// The comparison.
    pub op: Op,
    /// The value compared with (empty for [`Op::Present`]).
    pub value: String,
}

fn number(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

impl Requirement {
    /// Parses `name` or `name OP value`.
    /// ```
    /// use troupe_actor_abi::caps::{Op, Requirement};
    /// let r = Requirement::parse("mem >= 32").unwrap();
    /// assert_eq!((r.name.as_str(), r.op, r.value.as_str()), ("mem", Op::Ge, "32"));
    /// assert!(Requirement::parse("mem>=lots").unwrap_err().to_string().contains("not a number"));
    /// ```
    pub fn parse(s: &str) -> Result<Requirement, CapError> {
        let whole = s.trim();
        let show = shown(whole);
        let Some(at) = whole.find(['=', '<', '>', '!']) else {
            check_name(whole, whole)?;
            return Ok(Requirement { name: whole.to_string(), op: Op::Present, value: String::new() });
        };
        let name = whole[..at].trim();
        let rest = &whole[at..];
        let (op, len) = [
            (">=", Op::Ge),
            ("<=", Op::Le),
            ("!=", Op::Ne),
            ("==", Op::Eq),
            ("=", Op::Eq),
            (">", Op::Gt),
            ("<", Op::Lt),
        ]
        .into_iter()
        .find(|(sym, _)| rest.starts_with(sym))
        .map(|(sym, op)| (op, sym.len()))
        .ok_or_else(|| CapError(format!("`{show}`: expected one of =, !=, >=, <=, >, < after the name")))?;
        check_name(name, whole)?;
        let value = rest[len..].trim();
        if value.is_empty() {
            return Err(CapError(format!("`{show}`: no value after `{}`", op.symbol())));
        }
        check_value(value, whole)?;
        if op.numeric_only() && number(value).is_none() {
            return Err(CapError(format!(
                "`{show}`: `{}` compares numbers and `{}` is not a number",
                op.symbol(),
                shown(value)
            )));
        }
        Ok(Requirement { name: name.to_string(), op, value: value.to_string() })
    }

    /// Whether a node whose capability `self.name` has `value` (`None`: it lacks it)
    /// satisfies this requirement.
    pub fn holds(&self, value: Option<&str>) -> bool {
        let Some(have) = value else {
            return self.op == Op::Ne;
        };
        let numbers = number(have).zip(number(&self.value));
        match self.op {
            Op::Present => !matches!(have, "" | "0" | "false"),
            Op::Eq => numbers.map_or(have == self.value, |(a, b)| a == b),
            Op::Ne => numbers.map_or(have != self.value, |(a, b)| a != b),
            Op::Ge => numbers.is_some_and(|(a, b)| a >= b),
            Op::Le => numbers.is_some_and(|(a, b)| a <= b),
            Op::Gt => numbers.is_some_and(|(a, b)| a > b),
            Op::Lt => numbers.is_some_and(|(a, b)| a < b),
        }
    }

    /// Whether the capabilities `caps` satisfy this requirement.
    pub fn holds_in(&self, caps: &[String]) -> bool {
        self.holds(value_of(caps, &self.name))
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{}", self.name, self.op.symbol(), self.value)
    }
}

/// Whether `caps` satisfy `requirement` (a requirement that does not parse is never satisfied;
/// check requirements with [`Requirement::parse`] where they come in).
pub fn satisfies(caps: &[String], requirement: &str) -> bool {
    Requirement::parse(requirement).is_ok_and(|r| r.holds_in(caps))
}

/// Whether `caps` satisfy every one of `requirements`.
pub fn satisfies_all(caps: &[String], requirements: &[String]) -> bool {
    requirements.iter().all(|r| satisfies(caps, r))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(list: &str) -> Vec<String> {
        parse_list(list).unwrap()
    }

    #[test]
    fn plain_names_keep_working_both_ways() {
        let c = caps("morse,Caesar cipher");
        assert!(satisfies_all(&c, &["morse".into(), "Caesar cipher".into()]));
        assert!(!satisfies(&c, "picky"));
        // An old node's plain list, a requirement for the value a plain name has.
        assert!(satisfies(&["gpu".to_string()], "gpu=true"));
        assert!(satisfies(&["gpu".to_string()], "gpu"));
    }

    #[test]
    fn a_plain_requirement_wants_a_truthy_value_as_thespian_does() {
        for (list, ok) in
            [("asdf", true), ("asdf=x", true), ("asdf=false", false), ("asdf=0", false), ("", false)]
        {
            assert_eq!(satisfies(&caps(list), "asdf"), ok, "{list}");
        }
        // Keys are case-sensitive.
        assert!(!satisfies(&caps("Frog=ribbet"), "frog=ribbet"));
        assert!(satisfies(&caps("frog=ribbet"), "frog=ribbet"));
        assert!(!satisfies(&caps("frog=ribbet"), "frog=Ribbet"));
    }

    #[test]
    fn comparisons_are_numeric_when_both_sides_are_numbers() {
        let c = caps("mem=64,gpu=A100,ver=10");
        for (req, ok) in [
            ("mem>=32", true),
            ("mem>=64", true),
            ("mem>64", false),
            ("mem<=64", true),
            ("mem<100", true),
            ("mem=64.0", true),
            ("mem==64", true),
            ("mem!=64", false),
            ("mem!=16", true),
            ("ver>9", true), // 10 > 9 as numbers, not as strings
            ("gpu=A100", true),
            ("gpu!=A100", false),
            ("gpu!=H100", true),
            ("gpu>=1", false), // not a number on the node's side
            ("disk>=1", false),
            ("disk!=1", true), // absent is not 1
            ("disk=1", false),
        ] {
            assert_eq!(satisfies(&c, req), ok, "{req}");
        }
    }

    #[test]
    fn bad_requirements_and_capabilities_say_why() {
        for (req, why) in [
            ("", "empty"),
            (">=3", "empty"),
            ("mem>=", "no value"),
            ("mem>=lots", "not a number"),
            ("mem=>3", "cannot contain `>`"),
            ("mem~3", ""),
        ] {
            match Requirement::parse(req) {
                Err(e) => assert!(e.to_string().contains(why), "{req}: {e}"),
                Ok(r) if req == "mem~3" => assert_eq!(r.op, Op::Present),
                Ok(r) => panic!("{req} parsed as {r:?}"),
            }
        }
        assert!(!satisfies(&caps("mem=64"), "mem>=lots"));
        for (cap, why) in [("=3", "empty"), ("gpu=", "value is empty"), ("mem>=3", "cannot contain `>`")] {
            let e = parse_capability(cap).unwrap_err();
            assert!(e.to_string().contains(why), "{cap}: {e}");
        }
        assert_eq!(Requirement::parse(" mem >= 32 ").unwrap().to_string(), "mem>=32");
    }

    /// Issue 21 point 8: `a=b=c` was stored, yet no requirement can name the value `b=c`.
    #[test]
    fn a_value_no_requirement_can_name_is_refused() {
        for (cap, c) in [("a=b=c", '='), ("a=b<c", '<'), ("a=>3", '>'), ("a=x!", '!'), ("a=1,2", ',')] {
            let e = parse_capability(cap).unwrap_err().to_string();
            assert!(
                e.contains(&format!("cannot contain `{c}`")) && e.contains("no requirement"),
                "{cap}: {e}"
            );
        }
        assert!(parse_list("x,a=b=c").is_err());
        // Every value that is accepted can be named by a requirement that matches it.
        for cap in ["gpu=A100", "mem=64", "v=1.2-rc 3", "path=/opt/x"] {
            let (name, value) = parse_capability(cap).unwrap();
            let req = Requirement::parse(&format!("{name}={value}")).expect(cap);
            assert!(req.holds_in(&[render(&name, &value)]), "{cap}");
        }
        assert!(parse_capability("a\tb=1").unwrap_err().to_string().contains("control character"));
        assert!(parse_capability("a=b\nc").unwrap_err().to_string().contains("control character"));
    }

    /// Issue 21 point 8: a 100 KB name was accepted and echoed in full.
    #[test]
    fn over_long_names_and_values_are_refused_and_shown_in_short() {
        let name = "n".repeat(MAX_NAME_BYTES);
        assert!(parse_capability(&name).is_ok(), "the longest name is fine");
        let huge = "n".repeat(100_000);
        for entry in [huge.clone(), format!("{huge}=1"), format!("x={huge}"), format!("{name}n")] {
            let e = parse_capability(&entry).unwrap_err().to_string();
            assert!(e.contains("at most"), "{e}");
            assert!(e.len() < 200, "the error repeats {} bytes", e.len());
            let r = Requirement::parse(&entry).unwrap_err().to_string();
            assert!(r.contains("at most") && r.len() < 200, "{}", &r[..200.min(r.len())]);
        }
        assert!(parse_capability(&format!("x={}", "v".repeat(MAX_VALUE_BYTES))).is_ok());
        let e = Requirement::parse(&format!("mem>={huge}")).unwrap_err().to_string();
        assert!(e.len() < 200, "{}", e.len());
    }

    #[test]
    fn lists_render_values_and_the_last_entry_wins() {
        assert_eq!(caps("mem=16, mem=64, morse=true"), ["mem=64", "morse"]);
        assert_eq!(value_of(&caps("mem=64"), "mem"), Some("64"));
        assert_eq!(value_of(&caps("mem=64"), "me"), None);
    }
}
