//! Request parameters as 3scale's APIs take them, merged from the query string and a form or
//! JSON body into one ordered list of `name=value` (nested JSON as `a[b]`; the HTTP layer does
//! the merging). Typed inputs are parsed from a [`Form`] at the edge; every problem is an
//! [`Invalid`] naming its field.

use crate::Invalid;
use std::str::FromStr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Form(pub Vec<(String, String)>);

impl Form {
    /// A form from name/value pairs.
    pub fn of(pairs: &[(&str, &str)]) -> Form {
        Form(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    /// The value of `name`, if given (the last one wins, as in Rails).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// A given, non-blank value, trimmed.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// Every value of `name` and `name[]` (repeated form fields, JSON arrays), in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        let array = format!("{name}[]");
        self.0
            .iter()
            .filter(|(k, _)| k == name || *k == array)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A required, non-blank value.
    pub fn required(&self, name: &str) -> Result<&str, Invalid> {
        match self.get(name) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(Invalid::field(name, "can't be blank")),
        }
    }

    /// An optional value parsed as `T`; a value that does not parse is invalid, named.
    pub fn parse<T: FromStr>(&self, name: &str) -> Result<Option<T>, Invalid> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| Invalid::field(name, format!("is invalid: `{v}`"))),
        }
    }

    /// An optional boolean (`true/false`, `1/0`).
    pub fn flag(&self, name: &str) -> Result<Option<bool>, Invalid> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some("true") | Some("1") => Ok(Some(true)),
            Some("false") | Some("0") => Ok(Some(false)),
            Some(v) => Err(Invalid::field(name, format!("must be true or false, not `{v}`"))),
        }
    }
}

/// `page` / `per_page` as 3scale takes them (per_page at most 500, the default when none is
/// given: lists are always bounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub page: i64,
    pub per_page: i64,
}

impl Page {
    pub const MAX_PER_PAGE: i64 = 500;
    /// The first page of the longest size: what a list without `page` answers.
    pub const FIRST: Page = Page {
        page: 1,
        per_page: Page::MAX_PER_PAGE,
    };

    pub fn offset(&self) -> i64 {
        (self.page - 1) * self.per_page
    }
}

impl FromForm for Page {
    fn from_form(form: &Form) -> Result<Self, Invalid> {
        let page = form.parse::<i64>("page")?.unwrap_or(1);
        let per_page = form.parse::<i64>("per_page")?.unwrap_or(Page::MAX_PER_PAGE);
        if page < 1 {
            return Err(Invalid::field("page", "must be 1 or more"));
        }
        if !(1..=Page::MAX_PER_PAGE).contains(&per_page) {
            return Err(Invalid::field("per_page", "must be between 1 and 500"));
        }
        Ok(Page { page, per_page })
    }
}

/// A typed input parsed from a form.
pub trait FromForm: Sized {
    fn from_form(form: &Form) -> Result<Self, Invalid>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_field() {
        let f = Form::of(&[("n", "abc"), ("b", "maybe"), ("blank", " ")]);
        assert!(matches!(f.parse::<i64>("n"), Err(Invalid(e)) if e[0].field == "n"));
        assert!(matches!(f.flag("b"), Err(Invalid(e)) if e[0].field == "b"));
        assert!(matches!(f.required("blank"), Err(Invalid(e)) if e[0].field == "blank"));
        assert_eq!(f.parse::<i64>("missing").unwrap_or_default(), None);
        assert_eq!(Form::of(&[("a", "1"), ("a", "2")]).get("a"), Some("2"), "the last wins");
        assert_eq!(Form::of(&[("ids[]", "1"), ("ids", "2")]).all("ids"), vec!["1", "2"]);
    }
}
