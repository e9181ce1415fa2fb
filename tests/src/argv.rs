//! The command line of a test's node: a [`NodeArgs`] (the one builder of `troupe start`'s
//! argv, shared with the detached start and the benchmark) with the test's extra arguments.
//!
//! [`NodeArgs::argv`] writes every setting it has, and clap refuses a flag given twice, so an
//! extra argument that names one of those settings goes into its field instead of onto the end.
//! Everything else (`--secret-file`, a flag a test expects to be refused) is appended as it is.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{anyhow, bail, Context as _, Result};
use troupe_node::launch::{AuthorityKind, NodeArgs};

/// `troupe start`'s arguments for a test's node on `port`: capabilities `caps`
/// (comma-separated), state in `state_dir`, in the foreground, leading its own convention
/// unless `extra` names another one; then `extra`.
///
/// Panics on an extra setting whose value does not parse: that is a mistake in the test.
pub(crate) fn node_argv(port: u16, caps: &str, state_dir: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args = NodeArgs::new(port);
    args.capabilities = caps.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect();
    args.state_dir = Some(state_dir.to_path_buf());
    args.foreground = true;
    // Never the default 127.0.0.1:1900, which a demo on this machine may be using.
    args.convention = format!("127.0.0.1:{port}");
    let rest =
        take_settings(&mut args, extra).unwrap_or_else(|e| panic!("extra node arguments {extra:?}: {e:#}"));
    let mut argv = args.argv();
    argv.extend(rest.into_iter().map(OsString::from));
    argv
}

/// Moves every setting [`NodeArgs`] writes from `extra` into `args`; returns the other
/// arguments in their order. Takes `--flag value` and `--flag=value`.
fn take_settings(args: &mut NodeArgs, extra: &[&str]) -> Result<Vec<String>> {
    let mut rest = Vec::new();
    let mut it = extra.iter();
    while let Some(&arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v)),
            _ => (arg, None),
        };
        if set_switch(args, flag) {
            continue;
        }
        if !takes_value(flag) {
            rest.push(arg.to_string());
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().copied().ok_or_else(|| anyhow!("{flag} needs a value"))?,
        };
        set_value(args, flag, value).with_context(|| format!("{flag} {value}"))?;
    }
    Ok(rest)
}

/// Sets a flag without a value; false if `flag` is not one.
fn set_switch(args: &mut NodeArgs, flag: &str) -> bool {
    match flag {
        "--insecure" => args.insecure = true,
        "--foreground" => args.foreground = true,
        "--actor-system-calls" => args.actor_system_calls = true,
        _ => return false,
    }
    true
}

/// The flags with a value that [`NodeArgs`] writes (or, for the optional ones, may write).
const VALUE_FLAGS: &[&str] = &[
    "--bind",
    "--state-dir",
    "--authority",
    "--trusted-keys",
    "--log-format",
    "--metrics",
    "--convention",
    "--heartbeat",
    "--dead-after",
    "--remote-sources",
    "--lib-copies",
    "--version-threads",
    "--long-handler",
    "--max-connections",
    "--idle-timeout",
    "--authority-timeout",
];

/// Whether [`NodeArgs`] has a field for `flag`'s value.
fn takes_value(flag: &str) -> bool {
    VALUE_FLAGS.contains(&flag)
}

/// Sets the field of `flag` (one of [`VALUE_FLAGS`]) to `value`.
fn set_value(args: &mut NodeArgs, flag: &str, value: &str) -> Result<()> {
    match flag {
        "--bind" => args.bind = value.parse()?,
        "--state-dir" => args.state_dir = Some(value.into()),
        "--authority" => args.authority = authority(value)?,
        "--trusted-keys" => args.trusted_keys = Some(value.into()),
        "--log-format" => args.log_format = value.to_string(),
        "--metrics" => args.metrics = Some(value.parse()?),
        "--convention" => args.convention = value.to_string(),
        "--heartbeat" => args.heartbeat = humantime::parse_duration(value)?,
        "--dead-after" => args.dead_after = humantime::parse_duration(value)?,
        "--remote-sources" => args.remote_sources = value.parse().map_err(|e: String| anyhow!(e))?,
        "--lib-copies" => args.lib_copies = value.parse().map_err(|e: String| anyhow!(e))?,
        "--version-threads" => args.version_threads = Some(value.parse()?),
        "--long-handler" => args.long_handler = humantime::parse_duration(value)?,
        "--max-connections" => args.max_connections = value.parse()?,
        "--idle-timeout" if value == "off" => args.idle_timeout = std::time::Duration::ZERO,
        "--idle-timeout" => args.idle_timeout = humantime::parse_duration(value)?,
        "--authority-timeout" => args.authority_timeout = humantime::parse_duration(value)?,
        other => bail!("{other} is not a setting of NodeArgs"),
    }
    Ok(())
}

/// The authority `--authority` names.
fn authority(name: &str) -> Result<AuthorityKind> {
    [AuthorityKind::AcceptAll, AuthorityKind::Ed25519, AuthorityKind::None]
        .into_iter()
        .find(|k| k.as_str() == name)
        .ok_or_else(|| anyhow!("no authority is called {name:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(port: u16, caps: &str, extra: &[&str]) -> Vec<String> {
        node_argv(port, caps, Path::new("/tmp/n"), extra)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    /// How often `flag` occurs, and the value after its first occurrence.
    fn flag<'a>(argv: &'a [String], flag: &str) -> (usize, Option<&'a str>) {
        let n = argv.iter().filter(|a| *a == flag).count();
        let value = argv.iter().position(|a| a == flag).and_then(|i| argv.get(i + 1)).map(String::as_str);
        (n, value)
    }

    #[test]
    fn a_node_leads_its_own_convention_in_the_foreground() {
        let argv = text(4100, "morse,Caesar cipher", &[]);
        assert_eq!(&argv[..3], ["start", "4100", "morse,Caesar cipher"]);
        assert_eq!(flag(&argv, "--convention"), (1, Some("127.0.0.1:4100")));
        assert_eq!(flag(&argv, "--state-dir"), (1, Some("/tmp/n")));
        assert_eq!(flag(&argv, "--foreground").0, 1);
        assert_eq!(text(4100, "", &[])[2], "");
    }

    #[test]
    fn settings_in_the_extras_replace_the_defaults_once() {
        let extra =
            ["--convention", "127.0.0.1:9", "--heartbeat", "200ms", "--dead-after=1s", "--authority", "none"];
        let argv = text(4100, "", &extra);
        assert_eq!(flag(&argv, "--convention"), (1, Some("127.0.0.1:9")));
        assert_eq!(flag(&argv, "--heartbeat"), (1, Some("200ms")));
        assert_eq!(flag(&argv, "--dead-after"), (1, Some("1000ms")));
        assert_eq!(flag(&argv, "--authority"), (1, Some("none")));
        let argv =
            text(4100, "", &["--lib-copies", "store", "--remote-sources", "leader-only", "--insecure"]);
        assert_eq!(flag(&argv, "--lib-copies"), (1, Some("store")));
        assert_eq!(flag(&argv, "--remote-sources"), (1, Some("leader-only")));
        assert_eq!(flag(&argv, "--insecure").0, 1);
        let argv =
            text(4100, "", &["--bind", "0.0.0.0", "--log-format", "json", "--metrics", "127.0.0.1:9464"]);
        assert_eq!(flag(&argv, "--bind"), (1, Some("0.0.0.0")));
        assert_eq!(flag(&argv, "--log-format"), (1, Some("json")));
        assert_eq!(flag(&argv, "--metrics"), (1, Some("127.0.0.1:9464")));
        let argv = text(4100, "", &["--version-threads", "2", "--long-handler=200ms"]);
        assert_eq!(flag(&argv, "--version-threads"), (1, Some("2")));
        assert_eq!(flag(&argv, "--long-handler"), (1, Some("200ms")));
    }

    #[test]
    fn other_arguments_are_appended_in_their_order() {
        let argv =
            text(4100, "", &["--secret-file", "/tmp/s", "--authority", "ed25519", "--trusted-keys", "/k"]);
        assert_eq!(&argv[argv.len() - 2..], ["--secret-file", "/tmp/s"]);
        assert_eq!(flag(&argv, "--trusted-keys"), (1, Some("/k")));
    }

    #[test]
    #[should_panic(expected = "--heartbeat")]
    fn a_bad_setting_is_the_tests_mistake() {
        text(4100, "", &["--heartbeat", "soon"]);
    }
}
