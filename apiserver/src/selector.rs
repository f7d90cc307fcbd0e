//! Label and field selectors (`?labelSelector=`, `?fieldSelector=`), parsed once per request and
//! matched against the labels and indexed fields the cache keeps beside each object.

#[cfg(test)]
use std::collections::BTreeMap;

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelRequirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<LabelSelector> {
        let mut requirements = Vec::new();
        for term in split_top_level(text) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(term)?);
        }
        Ok(LabelSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    #[cfg(test)]
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|key| labels.get(key).map(String::as_str))
    }

    /// Matches labels read by `label` (the cache keeps them in a compact form, not a map).
    pub fn matches_with<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        let is_in = |values: &[String], label: &str| values.iter().any(|value| value == label);
        self.requirements.iter().all(|requirement| match requirement {
            LabelRequirement::Equals(key, value) => label(key) == Some(value.as_str()),
            LabelRequirement::NotEquals(key, value) => label(key) != Some(value.as_str()),
            LabelRequirement::In(key, values) => label(key).is_some_and(|label| is_in(values, label)),
            LabelRequirement::NotIn(key, values) => label(key).is_none_or(|label| !is_in(values, label)),
            LabelRequirement::Exists(key) => label(key).is_some(),
            LabelRequirement::DoesNotExist(key) => label(key).is_none(),
        })
    }
}

/// Splits on commas that are not inside a `( ... )` value set.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn bad_selector(term: &str, why: &str) -> Error {
    Error::BadRequest(format!("unable to parse requirement: {term:?}: {why}"))
}

fn parse_requirement(term: &str) -> Result<LabelRequirement> {
    if let Some(key) = term.strip_prefix('!') {
        return Ok(LabelRequirement::DoesNotExist(check_key(key.trim(), term)?));
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(LabelRequirement::NotEquals(check_key(key.trim(), term)?, value.trim().to_string()));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(LabelRequirement::Equals(check_key(key.trim(), term)?, value.trim().to_string()));
    }
    for (operator, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, values)) = term.split_once(operator) {
            let values = values.trim();
            let inner = values
                .strip_prefix('(')
                .and_then(|rest| rest.strip_suffix(')'))
                .ok_or_else(|| bad_selector(term, "a set must be in parentheses"))?;
            let set: Vec<String> =
                inner.split(',').map(|value| value.trim().to_string()).filter(|value| !value.is_empty()).collect();
            let key = check_key(key.trim(), term)?;
            return Ok(if negated { LabelRequirement::NotIn(key, set) } else { LabelRequirement::In(key, set) });
        }
    }
    Ok(LabelRequirement::Exists(check_key(term, term)?))
}

fn check_key(key: &str, term: &str) -> Result<String> {
    let valid = !key.is_empty()
        && key.len() <= 317
        && key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if !valid {
        return Err(bad_selector(term, "invalid label key"));
    }
    Ok(key.to_string())
}

/// A parsed field selector: `field=value`, `field==value`, `field!=value`, comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    /// (field, value, equal).
    requirements: Vec<(String, String, bool)>,
}

impl FieldSelector {
    /// Parses and checks each field against those the resource supports.
    pub fn parse(text: &str, supported: &[&str]) -> Result<FieldSelector> {
        let mut requirements = Vec::new();
        for term in text.split(',').map(str::trim).filter(|term| !term.is_empty()) {
            let (field, value, equal) = if let Some((field, value)) = term.split_once("!=") {
                (field, value, false)
            } else if let Some((field, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (field, value, true)
            } else {
                return Err(Error::BadRequest(format!("invalid selector: '{text}'; can't understand '{term}'")));
            };
            let field = field.trim();
            let known = field == "metadata.name" || field == "metadata.namespace" || supported.contains(&field);
            if !known {
                return Err(Error::BadRequest(format!("field label not supported: {field}")));
            }
            requirements.push((field.to_string(), value.trim().to_string(), equal));
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    #[cfg(test)]
    pub fn matches(&self, fields: &BTreeMap<String, String>) -> bool {
        self.matches_with(|field| fields.get(field).map(String::as_str).unwrap_or(""))
    }

    /// Whether the indexed fields the cache keeps, read by `field` ("" for one the object
    /// lacks), satisfy every requirement.
    pub fn matches_with<'a>(&self, field: impl Fn(&str) -> &'a str) -> bool {
        self.requirements.iter().all(|(name, value, equal)| (field(name) == value) == *equal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect()
    }

    fn check(selector: &str, pairs: &[(&str, &str)], expected: bool) {
        let parsed = LabelSelector::parse(selector).unwrap();
        assert_eq!(parsed.matches(&labels(pairs)), expected, "{selector} on {pairs:?}");
    }

    #[test]
    fn label_selectors() {
        check("", &[], true);
        check("app=web", &[("app", "web")], true);
        check("app==web", &[("app", "db")], false);
        check("app!=web", &[], true);
        check("app in (web, db),tier", &[("app", "db"), ("tier", "x")], true);
        check("app in (web, db),tier", &[("app", "db")], false);
        check("app notin (web)", &[("app", "db")], true);
        check("!app", &[("app", "db")], false);
        check("app", &[("app", "")], true);
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a b=c").is_err());
    }

    #[test]
    fn field_selectors() {
        let selector = FieldSelector::parse("metadata.name=a,status.phase!=Running", &["status.phase"]).unwrap();
        let fields = labels(&[("metadata.name", "a"), ("status.phase", "Pending")]);
        assert!(selector.matches(&fields));
        assert!(FieldSelector::parse("spec.bogus=1", &[]).is_err());
    }
}

/// What a LIST or WATCH selects: both selectors, matched against a cached object.
#[derive(Debug, Clone, Default)]
pub struct ObjectFilter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl ObjectFilter {
    pub fn matches(&self, object: &crate::cached_object::CachedObject) -> bool {
        self.labels.matches_with(|key| object.label(key)) && self.fields.matches_with(|name| object.field(name))
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }
}
