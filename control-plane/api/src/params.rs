//! Request parameters as 3scale's APIs take them: from the query string, a form body or a JSON
//! body, merged into one ordered list of `name=value` (nested JSON becomes `a[b]`), so clients
//! written for 3scale work whichever they use. The guard parses them once (the access token may
//! be among them) and hands them to the handler.

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde_json::Value;
use tollgate_domain::form::Form;

/// A request's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params(pub Form);

impl std::ops::Deref for Params {
    type Target = Form;

    fn deref(&self) -> &Form {
        &self.0
    }
}

impl Params {
    pub fn from_query(query: &str) -> Result<Self, ApiError> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map(|pairs| Params(Form(pairs)))
            .map_err(|e| ApiError::BadRequest(format!("query string: {e}")))
    }

    /// Adds a form or JSON body's parameters.
    pub fn extend_from_body(&mut self, content_type: &str, body: &[u8]) -> Result<(), ApiError> {
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
                flatten(&k, v, &mut self.0 .0);
            }
        } else {
            let pairs = serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
                .map_err(|e| ApiError::BadRequest(format!("form body: {e}")))?;
            self.0 .0.extend(pairs);
        }
        Ok(())
    }

    /// Query and body of a request, merged.
    pub async fn read(req: Request) -> Result<Params, ApiError> {
        let mut params = Params::from_query(req.uri().query().unwrap_or(""))?;
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let body = Bytes::from_request(req, &())
            .await
            .map_err(|e| ApiError::BadRequest(e.body_text()))?;
        params.extend_from_body(&content_type, &body)?;
        Ok(params)
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

/// The parameters the guard read (it puts them in the request's extensions), else the
/// request's own.
impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(mut req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(p) = req.extensions_mut().remove::<Params>() {
            return Ok(p);
        }
        Params::read(req).await
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
