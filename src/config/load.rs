//! Loading the configuration: built-in defaults, then the TOML file, then
//! `RINGCAST_<SECTION>_<KEY>` environment variables, then CLI flags. Every
//! layer is merged as TOML values and every key is checked on its own, so an
//! error names the key and where it came from.

use std::collections::BTreeMap;

use super::{Config, Overrides};
use crate::error::StartError;

/// Every section and key the configuration has, read from the serialised
/// defaults (an unset `Option` key serialises as null, so it is listed too):
/// the schema cannot drift from the structs.
pub(super) struct Schema(BTreeMap<String, Vec<String>>);

impl Schema {
    pub(super) fn of_defaults() -> Schema {
        let v = serde_json::to_value(Config::default()).expect("the defaults serialise");
        let sections = v
            .as_object()
            .expect("the configuration is a table of sections")
            .iter()
            .map(|(name, keys)| {
                let keys = keys
                    .as_object()
                    .map(|k| k.keys().cloned().collect())
                    .unwrap_or_default();
                (name.clone(), keys)
            })
            .collect();
        Schema(sections)
    }

    /// Every `(section, key)`.
    #[cfg(test)]
    pub(super) fn keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .flat_map(|(s, keys)| keys.iter().map(move |k| (s.as_str(), k.as_str())))
    }

    /// An unknown section or key is an error that names it and its origin.
    fn check_known(&self, section: &str, key: &str, origin: &Origin) -> Result<(), StartError> {
        match self.0.get(section) {
            None => Err(StartError::Config(format!(
                "unknown configuration section `{section}` (key `{section}.{key}`, from {})",
                origin.0
            ))),
            Some(keys) if !keys.iter().any(|k| k == key) => Err(StartError::Config(format!(
                "unknown configuration key `{section}.{key}` (from {})",
                origin.0
            ))),
            Some(_) => Ok(()),
        }
    }
}

/// Where a key's value came from, for error messages; for an environment
/// variable also its text as given.
#[derive(Debug, Clone)]
struct Origin(String, Option<String>);

type Layer = Vec<(String, String, toml::Value, Origin)>;

impl Config {
    /// Builds the configuration from the file, `env` (pairs of name, value)
    /// and the CLI overrides, then validates it.
    pub fn load(
        cli: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, StartError> {
        let mut layers: Layer = Vec::new();
        if let Some(path) = &cli.config {
            let text = std::fs::read_to_string(path).map_err(|e| {
                StartError::Config(format!("cannot read config file {}: {e}", path.display()))
            })?;
            let table: toml::Table = toml::from_str(&text).map_err(|e| {
                StartError::Config(format!(
                    "config file {}: {}",
                    path.display(),
                    one_line(&e.to_string())
                ))
            })?;
            for (section, v) in table {
                let toml::Value::Table(keys) = v else {
                    return Err(StartError::Config(format!(
                        "config file {}: `{section}` must be a [section]",
                        path.display()
                    )));
                };
                for (k, v) in keys {
                    layers.push((
                        section.clone(),
                        k,
                        v,
                        Origin(format!("file {}", path.display()), None),
                    ));
                }
            }
        }
        let mut env: Vec<(String, String)> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("RINGCAST_"))
            .collect();
        env.sort();
        for (name, raw) in env {
            let rest = name["RINGCAST_".len()..].to_ascii_lowercase();
            let Some((section, key)) = rest.split_once('_') else {
                return Err(StartError::Config(format!(
                    "unknown configuration key in environment variable {name}"
                )));
            };
            layers.push((
                section.into(),
                key.into(),
                guess_value(&raw),
                Origin(format!("environment {name}"), Some(raw.clone())),
            ));
        }
        let flag = |k: &str| Origin(format!("flag --{k}"), None);
        if let Some(l) = &cli.listen {
            layers.push((
                "server".into(),
                "listen".into(),
                toml::Value::String(l.clone()),
                flag("listen"),
            ));
        }
        if let Some(w) = cli.workers {
            layers.push((
                "server".into(),
                "workers".into(),
                toml::Value::Integer(w as i64),
                flag("workers"),
            ));
        }
        if cli.demo {
            layers.push((
                "demo".into(),
                "enabled".into(),
                toml::Value::Boolean(true),
                flag("demo"),
            ));
        }
        if let Some(f) = &cli.log_format {
            layers.push((
                "log".into(),
                "format".into(),
                toml::Value::String(f.clone()),
                flag("log-format"),
            ));
        }

        let schema = Schema::of_defaults();
        let mut merged = toml::Table::new();
        let mut sources = std::collections::BTreeMap::new();
        for (section, key, value, origin) in layers {
            schema.check_known(&section, &key, &origin)?;
            let value = check_key(&section, &key, value, &origin)?;
            sources.insert(format!("{section}.{key}"), origin.0);
            merged
                .entry(section)
                .or_insert_with(|| toml::Value::Table(Default::default()))
                .as_table_mut()
                .expect("sections are tables")
                .insert(key, value);
        }
        let mut cfg: Config =
            toml::Value::Table(merged)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    StartError::Config(format!("configuration: {}", one_line(&e.to_string())))
                })?;
        cfg.sources = super::Sources(sources);
        let from = |key: &str| {
            cfg.sources
                .of(key)
                .map_or_else(|| "the default".to_owned(), str::to_owned)
        };
        if let Err(bad) = cfg.check() {
            return Err(StartError::Config(format!(
                "bad value for `{}` (from {}): {}",
                bad.key,
                from(bad.key),
                one_line(&bad.why)
            )));
        }
        // An [auth] setting without a key would start a server open to
        // anyone: the operator meant auth (and forgot the secret).
        if !cfg.auth.enabled() {
            if let Some((key, origin)) = cfg.sources.0.iter().find(|(k, _)| k.starts_with("auth."))
            {
                return Err(StartError::Config(format!(
                    "`{key}` is set (from {origin}) but auth has no key: set auth.hs256_secret \
                     or auth.public_key_file (an [auth] setting never starts a server open), \
                     or remove the [auth] settings"
                )));
            }
        }
        Ok(cfg)
    }
}

/// An error's text on one line: `toml`'s errors quote the offending line
/// with a caret under it over several lines.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| matches!(c, '|' | '^' | ' ')))
        .collect::<Vec<_>>()
        .join("; ")
}

/// An environment value's TOML reading: a TOML literal when it parses as one
/// (`5`, `true`, `["a"]`, `"x"`), else the raw string.
fn guess_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// Checks one key on its own against the schema, so the error names it. An
/// environment value that failed as a guessed type is retried as a string,
/// then as a comma-separated list.
fn check_key(
    section: &str,
    key: &str,
    value: toml::Value,
    origin: &Origin,
) -> Result<toml::Value, StartError> {
    let try_one = |v: &toml::Value| -> Result<(), String> {
        let mut inner = toml::Table::new();
        inner.insert(key.to_owned(), v.clone());
        let mut outer = toml::Table::new();
        outer.insert(section.to_owned(), toml::Value::Table(inner));
        toml::Value::Table(outer)
            .try_into::<Config>()
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let first = match try_one(&value) {
        Ok(()) => return Ok(value),
        Err(e) => e,
    };
    if let Some(raw) = &origin.1 {
        // The variable's own text, not the guessed value printed back
        // (`1e5` must not become "100000.0").
        let raw = raw.clone();
        let as_string = toml::Value::String(raw.clone());
        if try_one(&as_string).is_ok() {
            return Ok(as_string);
        }
        let as_list = toml::Value::Array(
            raw.split(',')
                .map(|s| toml::Value::String(s.trim().to_owned()))
                .filter(|v| v.as_str() != Some(""))
                .collect(),
        );
        if try_one(&as_list).is_ok() {
            return Ok(as_list);
        }
    }
    Err(StartError::Config(format!(
        "bad value for `{section}.{key}` (from {}): {}",
        origin.0,
        one_line(&first)
    )))
}
