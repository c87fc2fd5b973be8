//! What the core needs to know of a request, read once by the glue.

/// The request head: method, `:path` (with query), `:authority` and headers (lower-case names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub authority: String,
    pub headers: Vec<(String, String)>,
}

impl RequestHead {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn query(&self) -> &str {
        self.path.split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    /// The first value of query parameter `name`, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query().split('&').find_map(|pair| {
            let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
            let same = if needs_decoding(n) {
                decode(n) == name
            } else {
                n == name
            };
            same.then(|| decode(v))
        })
    }
}

/// Most names and keys are plain: comparing them as they are spares an allocation per pair.
fn needs_decoding(s: &str) -> bool {
    s.bytes().any(|b| b == b'%' || b == b'+')
}

fn decode(s: &str) -> String {
    if !needs_decoding(s) {
        return s.to_string();
    }
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        let r = RequestHead {
            path: "/x?a=1&user_key=ab%2Fc+d&a=2".into(),
            ..Default::default()
        };
        assert_eq!(r.query_param("user_key").as_deref(), Some("ab/c d"));
        assert_eq!(r.query_param("a").as_deref(), Some("1"));
        assert_eq!(r.query_param("zz"), None);
        let encoded_name = RequestHead {
            path: "/x?user%5Fkey=k&a+b=2".into(),
            ..Default::default()
        };
        assert_eq!(encoded_name.query_param("user_key").as_deref(), Some("k"));
        assert_eq!(encoded_name.query_param("a b").as_deref(), Some("2"));
    }
}
