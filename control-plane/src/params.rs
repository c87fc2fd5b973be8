//! Request parameters as 3scale's APIs take them: from the query string, a form body or a JSON
//! body, merged into one ordered list of `name=value` (nested JSON becomes `a[b]`), so clients
//! written for 3scale work whichever they use.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde_json::Value;
use std::str::FromStr;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn from_query(query: &str) -> Result<Self, ApiError> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map(Params)
            .map_err(|e| ApiError::BadRequest(format!("query string: {e}")))
    }

    fn extend_from_body(&mut self, content_type: &str, body: &[u8]) -> Result<(), ApiError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        if content_type.starts_with("application/json") || body.first() == Some(&b'{') {
            let value: Value = serde_json::from_slice(body)
                .map_err(|e| ApiError::BadRequest(format!("body is not valid JSON: {e}")))?;
            let Value::Object(map) = value else {
                return Err(ApiError::BadRequest("JSON body must be an object".into()));
            };
            for (k, v) in map {
                flatten(&k, v, &mut self.0);
            }
        } else {
            let pairs = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
                .map_err(|e| ApiError::BadRequest(format!("form body: {e}")))?;
            self.0.extend(pairs);
        }
        Ok(())
    }

    /// The value of `name`, if given (the last one wins, as in Rails).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
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
    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        match self.get(name) {
            Some(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(ApiError::invalid(name, "can't be blank")),
        }
    }

    /// An optional value parsed as `T`; a value that does not parse is a 422 naming the field.
    pub fn parse<T: FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ApiError::invalid(name, format!("is invalid: `{v}`"))),
        }
    }

    /// An optional boolean (`true/false`, `1/0`).
    pub fn flag(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some("true") | Some("1") => Ok(Some(true)),
            Some("false") | Some("0") => Ok(Some(false)),
            Some(v) => Err(ApiError::invalid(name, format!("must be true or false, not `{v}`"))),
        }
    }
}

fn flatten(key: &str, value: Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::String(s) => out.push((key.to_string(), s)),
        Value::Bool(b) => out.push((key.to_string(), b.to_string())),
        Value::Number(n) => out.push((key.to_string(), n.to_string())),
        // Scalars as Rails' `name[]`; objects and arrays by index (`transactions[0][usage]…`),
        // as 3scale's form encoding numbers them.
        Value::Array(items) => {
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    Value::Object(_) | Value::Array(_) => flatten(&format!("{key}[{i}]"), item, out),
                    _ => flatten(&format!("{key}[]"), item, out),
                }
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                flatten(&format!("{key}[{k}]"), v, out);
            }
        }
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let mut params = Params::from_query(req.uri().query().unwrap_or(""))?;
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let body = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        params.extend_from_body(&content_type, &body)?;
        Ok(params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_query_form_and_json() {
        let mut p = Params::from_query("access_token=t&name=q").unwrap();
        p.extend_from_body("application/x-www-form-urlencoded", b"name=form&x=1")
            .unwrap();
        assert_eq!(p.get("name"), Some("form"));
        p.extend_from_body(
            "application/json",
            br#"{"name":"json","n":3,"b":true,"u":{"hits":2},"z":null}"#,
        )
        .unwrap();
        assert_eq!(p.get("name"), Some("json"));
        assert_eq!(p.get("n"), Some("3"));
        assert_eq!(p.get("u[hits]"), Some("2"));
        assert_eq!(p.get("z"), None);
        assert_eq!(p.get("access_token"), Some("t"));
        p.extend_from_body(
            "application/json",
            br#"{"ids":[1,2],"transactions":[{"user_key":"a","usage":{"hits":1}},{"user_key":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(p.all("ids"), vec!["1", "2"]);
        assert_eq!(p.get("transactions[0][usage][hits]"), Some("1"));
        assert_eq!(p.get("transactions[1][user_key]"), Some("b"));
    }

    #[test]
    fn bad_values_name_their_field() {
        let p = Params::from_query("n=abc&b=maybe&blank=+").unwrap();
        assert!(matches!(p.parse::<i64>("n"), Err(ApiError::Invalid(f)) if f[0].0 == "n"));
        assert!(matches!(p.flag("b"), Err(ApiError::Invalid(f)) if f[0].0 == "b"));
        assert!(matches!(p.required("blank"), Err(ApiError::Invalid(f)) if f[0].0 == "blank"));
        assert_eq!(p.parse::<i64>("missing").unwrap(), None);
    }

    #[test]
    fn bad_bodies_are_400() {
        let mut p = Params::default();
        assert!(matches!(
            p.extend_from_body("application/json", b"{nope"),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            p.extend_from_body("application/json", b"[1]"),
            Err(ApiError::BadRequest(_))
        ));
    }
}
