//! OpenAPI-style request parameters (`Name=value`, lists as `Name.1`,
//! `Name.2` or a JSON array in one parameter) and their typed access.

use std::collections::BTreeMap;

use crate::error::CloudError;

#[derive(Debug, Clone, Default)]
pub struct Params(pub BTreeMap<String, String>);

impl Params {
    pub fn new(map: BTreeMap<String, String>) -> Params {
        Params(map)
    }

    pub fn opt(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn req(&self, name: &str) -> Result<&str, CloudError> {
        self.opt(name)
            .ok_or_else(|| CloudError::missing_param(name))
    }

    pub fn opt_u64(&self, name: &str) -> Result<Option<u64>, CloudError> {
        self.opt(name)
            .map(|s| {
                s.trim().parse::<u64>().map_err(|_| {
                    CloudError::invalid_param(format!(
                        "The specified parameter {name} {s:?} is not a non-negative integer."
                    ))
                })
            })
            .transpose()
    }

    pub fn opt_i64(&self, name: &str) -> Result<Option<i64>, CloudError> {
        self.opt(name)
            .map(|s| {
                s.trim().parse::<i64>().map_err(|_| {
                    CloudError::invalid_param(format!(
                        "The specified parameter {name} {s:?} is not an integer."
                    ))
                })
            })
            .transpose()
    }

    pub fn opt_bool(&self, name: &str) -> Result<Option<bool>, CloudError> {
        self.opt(name)
            .map(|s| match s.to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => Err(CloudError::invalid_param(format!(
                    "The specified parameter {name} {s:?} is not true or false."
                ))),
            })
            .transpose()
    }

    /// A list given as `<plural>` (JSON array) or `<singular>.1`, `<singular>.2`, ….
    pub fn list(&self, plural: &str, singular: &str) -> Result<Vec<String>, CloudError> {
        if let Some(v) = self.opt(plural) {
            return serde_json::from_str::<Vec<String>>(v).map_err(|_| {
                CloudError::invalid_param(format!(
                    "The specified parameter {plural} is not a JSON array of strings."
                ))
            });
        }
        let mut out = Vec::new();
        for i in 1.. {
            match self.opt(&format!("{singular}.{i}")) {
                Some(v) => out.push(v.to_owned()),
                None => break,
            }
        }
        Ok(out)
    }

    /// Tags given as `Tag.N.Key` / `Tag.N.Value`.
    pub fn tags(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for i in 1.. {
            match self.opt(&format!("Tag.{i}.Key")) {
                Some(k) => {
                    out.insert(
                        k.to_owned(),
                        self.opt(&format!("Tag.{i}.Value")).unwrap_or("").to_owned(),
                    );
                }
                None => break,
            }
        }
        out
    }

    /// The parameters with secret values replaced, for the audit trail.
    pub fn redacted(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(k, v)| {
                let secret = ["Password", "Secret", "SecurityToken"]
                    .iter()
                    .any(|s| k.contains(s));
                (
                    k.clone(),
                    if secret {
                        "******".to_owned()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect()
    }
}
