//! Nacos's `conf/application.properties` and the environment variables of Nacos's container
//! image, applied under the command line: a flag given on the command line wins, then the
//! environment, then the properties file, then the built-in default (wire reference §6).
//!
//! Keys read: `server.port`, `nacos.standalone`, `nacos.home`, `nacos.member.list`,
//! `nacos.server.ip` / `nacos.inetutils.ip-address`, the Distro timings
//! (`nacos.core.protocol.distro.data.*`, `nacos.naming.client.expired.time`). Environment:
//! `MODE`, `NACOS_SERVER_PORT`, `NACOS_SERVER_IP`, `NACOS_SERVERS`, `NACOS_HOME`. Settings this
//! server cannot honour are refused or warned about rather than silently dropped: auth
//! switched on is refused until it is implemented (never run open when the operator asked
//! for auth); an external MySQL datasource is a warning (storage is always embedded).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use nacre_engine::naming::distro::DistroTimings;

use crate::settings::{Cli, Mode};

/// The properties file read when `--properties` is not given and it exists.
pub const DEFAULT_PROPERTIES: &str = "conf/application.properties";
/// Largest properties file accepted.
pub const PROPERTIES_BYTES_MAX: u64 = 1024 * 1024;

/// Parses Java `.properties` text: `key=value`, `key: value` or `key value`; `#` and `!`
/// comment lines; a trailing odd backslash continues the line; `\t \n \r \f \uXXXX` and
/// escaped separators in keys and values.
pub fn parse(text: &str) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, first)) = lines.next() {
        let mut logical = first.trim_start().to_string();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with('!') {
            continue;
        }
        while ends_with_odd_backslash(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_entry(&logical);
        let key = unescape(key).with_context(|| format!("line {}", index + 1))?;
        let value = unescape(value).with_context(|| format!("line {}", index + 1))?;
        out.insert(key, value);
    }
    Ok(out)
}

fn ends_with_odd_backslash(s: &str) -> bool {
    s.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// Splits at the first unescaped `=`, `:` or whitespace (then skips one `=`/`:` after
/// whitespace), as `java.util.Properties` does.
fn split_entry(line: &str) -> (&str, &str) {
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'=' | b':' => return (&line[..i], line[i + 1..].trim_start()),
            b' ' | b'\t' | b'\x0c' => {
                let rest = line[i..].trim_start();
                let rest = rest
                    .strip_prefix('=')
                    .or_else(|| rest.strip_prefix(':'))
                    .unwrap_or(rest);
                return (&line[..i], rest.trim_start());
            }
            _ => i += 1,
        }
    }
    (line, "")
}

fn unescape(s: &str) -> anyhow::Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\x0c'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)
                    .with_context(|| format!("bad \\u escape `\\u{hex}`"))?;
                out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    Ok(out)
}

/// Reads a properties file (size-capped); errors name the file.
pub fn read(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("read {}", path.display()))?
        .len();
    if len > PROPERTIES_BYTES_MAX {
        bail!(
            "{} is {len} bytes, over {PROPERTIES_BYTES_MAX}",
            path.display()
        );
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    parse(&text).with_context(|| format!("bad properties file {}", path.display()))
}

/// The properties file to read: `--properties`, else `$NACOS_HOME/conf/application.properties`,
/// else `conf/application.properties`, each only when it exists (an explicit path must).
pub fn locate(cli: &Cli, env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(p) = &cli.properties {
        if !p.is_file() {
            bail!("--properties {}: no such file", p.display());
        }
        return Ok(Some(p.clone()));
    }
    let candidates = env("NACOS_HOME")
        .map(|h| PathBuf::from(h).join(DEFAULT_PROPERTIES))
        .into_iter()
        .chain(std::iter::once(PathBuf::from(DEFAULT_PROPERTIES)));
    Ok(candidates.into_iter().find(|p| p.is_file()))
}

fn parse_port(v: &str, source: &str) -> anyhow::Result<u16> {
    v.trim()
        .parse()
        .with_context(|| format!("{source} `{v}` is not a port"))
}

/// Fills the settings the command line did not give (`given(field)` is false) from the
/// environment, then from `props`. Returns warnings to log.
pub fn apply(
    cli: &mut Cli,
    given: &dyn Fn(&str) -> bool,
    props: &BTreeMap<String, String>,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<String>> {
    let prop = |k: &str| {
        props
            .get(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let mut warnings = Vec::new();
    if prop("nacos.core.auth.enabled").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        bail!(
            "nacos.core.auth.enabled=true: authentication is not implemented yet; refusing to \
             start without the protection that was asked for"
        );
    }
    for key in ["spring.sql.init.platform", "spring.datasource.platform"] {
        if let Some(p) = prop(key) {
            warnings.push(format!(
                "{key}={p} ignored: storage is always the embedded Raft journal"
            ));
        }
    }
    if !given("port") {
        if let Some(v) = env("NACOS_SERVER_PORT") {
            cli.port = parse_port(&v, "NACOS_SERVER_PORT")?;
        } else if let Some(v) = prop("server.port") {
            cli.port = parse_port(&v, "server.port")?;
        }
    }
    if !given("bind") {
        if let Some(ip) = env("NACOS_SERVER_IP")
            .or_else(|| prop("nacos.server.ip"))
            .or_else(|| prop("nacos.inetutils.ip-address"))
        {
            cli.bind = ip;
        }
    }
    if !given("mode") {
        if let Some(m) = env("MODE") {
            cli.mode = match m.trim() {
                "standalone" => Mode::Standalone,
                "cluster" => Mode::Cluster,
                other => bail!("MODE `{other}` is neither standalone nor cluster"),
            };
        } else if let Some(v) = prop("nacos.standalone") {
            cli.mode = if v.eq_ignore_ascii_case("true") {
                Mode::Standalone
            } else {
                Mode::Cluster
            };
        }
    }
    if !given("data_dir") {
        if let Some(home) = env("NACOS_HOME").or_else(|| prop("nacos.home")) {
            cli.data_dir = PathBuf::from(home).join("data");
        }
    }
    let explicit_members = given("members") || given("cluster_conf") || given("member_list");
    if !explicit_members {
        // The container image separates members with spaces; the property with commas.
        if let Some(list) = env("NACOS_SERVERS").or_else(|| prop("nacos.member.list")) {
            cli.member_list = Some(list.replace(' ', ","));
        }
    }
    Ok(warnings)
}

/// Distro timings from the properties (Nacos's keys, milliseconds), defaults elsewhere.
pub fn distro_timings(props: &BTreeMap<String, String>) -> anyhow::Result<DistroTimings> {
    let mut t = DistroTimings::default();
    let fields: [(&str, &mut u64); 5] = [
        (
            "nacos.core.protocol.distro.data.sync.delayMs",
            &mut t.sync_delay_ms,
        ),
        (
            "nacos.core.protocol.distro.data.sync.retryDelayMs",
            &mut t.sync_retry_ms,
        ),
        (
            "nacos.core.protocol.distro.data.verify.intervalMs",
            &mut t.verify_interval_ms,
        ),
        (
            "nacos.core.protocol.distro.data.load.retryDelayMs",
            &mut t.load_retry_ms,
        ),
        ("nacos.naming.client.expired.time", &mut t.synced_expire_ms),
    ];
    for (key, field) in fields {
        if let Some(v) = props.get(key) {
            *field = v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|ms| *ms > 0)
                .with_context(|| format!("{key} `{v}` is not a positive number of ms"))?;
        }
    }
    Ok(t)
}

/// The idle time after which an SDK connection is probed with a `ClientDetectionRequest`
/// (`nacre.remote.client.idle.ms`; Nacos's fixed 20 s by default).
pub fn client_idle_ms(props: &BTreeMap<String, String>) -> anyhow::Result<u64> {
    const KEY: &str = "nacre.remote.client.idle.ms";
    match props.get(KEY) {
        None => Ok(crate::grpc::CLIENT_IDLE_MS),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms > 0)
            .with_context(|| format!("{KEY} `{v}` is not a positive number of ms")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn java_properties_syntax() {
        let p = parse(
            "# comment\n! also\n\nserver.port=9848\nnacos.home : /opt/nacos\n\
             spaced value\nmulti=a,\\\n    b\nescaped\\=key=x\\ty\nuni=\\u00e9\nempty=\n",
        )
        .expect("valid");
        assert_eq!(p["server.port"], "9848");
        assert_eq!(p["nacos.home"], "/opt/nacos");
        assert_eq!(p["spaced"], "value");
        assert_eq!(p["multi"], "a,b");
        assert_eq!(p["escaped=key"], "x\ty");
        assert_eq!(p["uni"], "é");
        assert_eq!(p["empty"], "");
        assert!(parse("bad=\\u12").is_err());
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("nacre").chain(args.iter().copied()))
    }

    #[test]
    fn command_line_beats_environment_beats_properties() {
        let props = parse(
            "server.port=9000\nnacos.standalone=false\nnacos.home=/srv/nacos\n\
             nacos.member.list=10.0.0.1:9000,10.0.0.2:9000\nnacos.server.ip=10.0.0.1\n",
        )
        .expect("valid");
        let none = |_: &str| None;
        let mut c = cli(&[]);
        apply(&mut c, &|_| false, &props, &none).expect("ok");
        assert_eq!(c.port, 9000);
        assert_eq!(c.mode, Mode::Cluster);
        assert_eq!(c.data_dir, PathBuf::from("/srv/nacos/data"));
        assert_eq!(c.bind, "10.0.0.1");
        assert_eq!(
            c.member_list.as_deref(),
            Some("10.0.0.1:9000,10.0.0.2:9000")
        );

        let env = |k: &str| match k {
            "NACOS_SERVER_PORT" => Some("9100".to_string()),
            "MODE" => Some("standalone".to_string()),
            "NACOS_SERVERS" => Some("10.0.0.1:9100 10.0.0.2:9100".to_string()),
            _ => None,
        };
        let mut c = cli(&[]);
        apply(&mut c, &|_| false, &props, &env).expect("ok");
        assert_eq!((c.port, c.mode), (9100, Mode::Standalone));
        assert_eq!(
            c.member_list.as_deref(),
            Some("10.0.0.1:9100,10.0.0.2:9100")
        );

        let mut c = cli(&["--port", "9200", "-m", "cluster"]);
        apply(&mut c, &|f| f == "port" || f == "mode", &props, &env).expect("ok");
        assert_eq!((c.port, c.mode), (9200, Mode::Cluster));

        let bad = |k: &str| (k == "MODE").then(|| "both".to_string());
        assert!(apply(&mut cli(&[]), &|_| false, &props, &bad).is_err());
    }

    #[test]
    fn auth_requested_is_refused_and_external_databases_warned() {
        let none = |_: &str| None;
        let auth = parse("nacos.core.auth.enabled=true").expect("valid");
        let e = apply(&mut cli(&[]), &|_| false, &auth, &none).expect_err("refused");
        assert!(e.to_string().contains("not implemented"), "{e}");
        let mysql = parse("spring.sql.init.platform=mysql").expect("valid");
        let w = apply(&mut cli(&[]), &|_| false, &mysql, &none).expect("ok");
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn distro_timings_from_nacos_keys() {
        let p = parse(
            "nacos.core.protocol.distro.data.sync.delayMs=500\nnacos.naming.client.expired.time=60000\n",
        )
        .expect("valid");
        let t = distro_timings(&p).expect("valid");
        assert_eq!((t.sync_delay_ms, t.synced_expire_ms), (500, 60_000));
        assert_eq!(
            t.verify_interval_ms,
            DistroTimings::default().verify_interval_ms
        );
        let bad = parse("nacos.core.protocol.distro.data.sync.delayMs=soon").expect("valid");
        assert!(distro_timings(&bad).is_err());
    }
}
