//! XML as 3scale writes it: compact, with the declaration, text and attributes escaped. One
//! writer for every XML answer (the service-management API's, the stats API's).

/// `&`, `<`, `>` always; `"` too inside attributes.
pub fn escape(s: &str, quotes: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if quotes => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

pub const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

/// A document being written.
#[derive(Debug, Default)]
pub struct Xml(String);

impl Xml {
    /// A document, with its declaration.
    pub fn document() -> Xml {
        Xml(DECLARATION.to_string())
    }

    /// `<name a="v">`.
    pub fn open(&mut self, name: &str, attrs: &[(&str, String)]) -> &mut Self {
        self.0.push('<');
        self.0.push_str(name);
        for (k, v) in attrs {
            self.0.push_str(&format!(" {k}=\"{}\"", escape(v, true)));
        }
        self.0.push('>');
        self
    }

    pub fn close(&mut self, name: &str) -> &mut Self {
        self.0.push_str("</");
        self.0.push_str(name);
        self.0.push('>');
        self
    }

    /// `<name>text</name>`, or `<name/>` for no text.
    pub fn leaf(&mut self, name: &str, text: impl std::fmt::Display) -> &mut Self {
        let text = text.to_string();
        match text.is_empty() {
            true => self.0.push_str(&format!("<{name}/>")),
            false => self.0.push_str(&format!("<{name}>{}</{name}>", escape(&text, false))),
        }
        self
    }

    /// `<name a="v">text</name>`.
    pub fn leaf_with(&mut self, name: &str, attrs: &[(&str, String)], text: impl std::fmt::Display) -> &mut Self {
        self.open(name, attrs);
        self.0.push_str(&escape(&text.to_string(), false));
        self.close(name)
    }

    pub fn finish(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_compact_escaped_xml() {
        let mut x = Xml::document();
        x.open("usage", &[]).leaf("name", "A & <B>").leaf("empty", "");
        x.leaf_with("values", &[("length", "2".into())], "1,2").close("usage");
        assert_eq!(
            x.finish(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><usage><name>A &amp; &lt;B&gt;</name><empty/><values length=\"2\">1,2</values></usage>"
        );
        assert_eq!(escape("\"q\"", true), "&quot;q&quot;");
    }
}

/// An element name for one item of a list named `plural` (`keys` → `key`, `policies` →
/// `policy`).
fn singular(plural: &str) -> String {
    match plural.strip_suffix("ies") {
        Some(stem) => format!("{stem}y"),
        None => plural.strip_suffix('s').unwrap_or(plural).to_string(),
    }
}

fn scalar(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Writes `value` as the content of an element named `name`: objects as child elements in
/// their order, lists as one child per item (`{"application": {…}}` items by their own name,
/// others by the list's singular), anything else as text. 3scale's JSON-only `links` are left
/// out.
fn element(x: &mut Xml, name: &str, value: &serde_json::Value, attrs: &[(&str, String)]) {
    use serde_json::Value;
    match value {
        Value::Object(fields) => {
            x.open(name, attrs);
            for (k, v) in fields.iter().filter(|(k, _)| k.as_str() != "links") {
                element(x, k, v, &[]);
            }
            x.close(name);
        }
        Value::Array(items) => {
            x.open(name, attrs);
            for item in items {
                match item {
                    Value::Object(one) if one.len() == 1 => {
                        let (k, v) = one
                            .iter()
                            .next()
                            .map(|(k, v)| (k.as_str(), v))
                            .unwrap_or(("item", item));
                        element(x, k, v, &[]);
                    }
                    other => element(x, &singular(name), other, &[]),
                }
            }
            x.close(name);
        }
        scalar_value if attrs.is_empty() => {
            x.leaf(name, scalar(scalar_value));
        }
        scalar_value => {
            x.leaf_with(name, attrs, scalar(scalar_value));
        }
    }
}

/// An admin-API JSON answer as 3scale's XML (porta's `to_xml` shapes): `{"account": {…}}` is
/// `<account>…</account>`; `{"accounts": [{"account": …}], "metadata": {…}}` is
/// `<accounts per_page=… total_entries=… total_pages=… current_page=…>` (the attributes only
/// when paginated); `{"errors": {"name": ["can't be blank"]}}` is
/// `<errors><error>name can't be blank</error></errors>`; `{"error": "…"}` is `<error>…</error>`;
/// 3scale's JSON 404 (`{"status": "Not found"}`) is an empty body. `None`: nothing to write.
pub fn from_json(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    let Value::Object(root) = value else {
        return Some(Xml::document().finish());
    };
    if root.get("status").and_then(Value::as_str) == Some("Not found") && root.len() == 1 {
        return None;
    }
    let mut x = Xml::document();
    if let Some(Value::Object(errors)) = root.get("errors") {
        x.open("errors", &[]);
        for (field, messages) in errors {
            for m in messages.as_array().into_iter().flatten() {
                x.leaf("error", format!("{field} {}", scalar(m)));
            }
        }
        x.close("errors");
        return Some(x.finish());
    }
    let mut entries = root.iter().filter(|(k, _)| k.as_str() != "metadata");
    let (name, body) = entries.next()?;
    let attrs: Vec<(&str, String)> = match root.get("metadata") {
        Some(Value::Object(m)) => ["per_page", "total_entries", "total_pages", "current_page"]
            .iter()
            .filter_map(|k| m.get(*k).map(|v| (*k, scalar(v))))
            .collect(),
        _ => Vec::new(),
    };
    element(&mut x, name, body, &attrs);
    Some(x.finish())
}

#[cfg(test)]
mod json_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_answers_become_3scale_xml() {
        let one = json!({"application": {"id": 7, "state": "live", "first_traffic_at": null, "keys": ["k1"],
                         "plan": {"id": 3, "name": "Basic"}, "links": [{"rel": "self"}]}});
        assert_eq!(
            from_json(&one).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><application><id>7</id><state>live</state><first_traffic_at/><keys><key>k1</key></keys><plan><id>3</id><name>Basic</name></plan></application>"
        );
        let page = json!({"applications": [{"application": {"id": 1}}],
                          "metadata": {"per_page": 1, "total_entries": 3, "total_pages": 3, "current_page": 2}});
        assert_eq!(
            from_json(&page).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><applications per_page=\"1\" total_entries=\"3\" total_pages=\"3\" current_page=\"2\"><application><id>1</id></application></applications>"
        );
        let all = json!({"applications": []});
        assert!(from_json(&all).unwrap().ends_with("<applications></applications>"));
        let errors = json!({"errors": {"name": ["can't be blank"]}});
        assert!(from_json(&errors)
            .unwrap()
            .ends_with("<errors><error>name can't be blank</error></errors>"));
        assert!(from_json(&json!({"error": "Access denied"}))
            .unwrap()
            .ends_with("<error>Access denied</error>"));
        assert_eq!(from_json(&json!({"status": "Not found"})), None);
        assert_eq!(singular("users"), "user");
    }
}
