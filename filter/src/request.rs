//! What the core needs to know of a request, read once from the host.
//!
//! The headers stay as Envoy hands them over (proxy-wasm's serialized header map) and are read
//! in place: copying each one into its own `String`s, as the SDK does, cost about 6,500 of
//! Envoy's 213,000 instructions per cached request (`BENCH_INSTRUCTIONS=1
//! scripts/bench-filter.sh`, README), for the two or three headers the core ever looks at.

/// The request head: method, `:path` (with query), `:authority` and headers (lower-case names).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub path: String,
    pub authority: String,
    headers: HeaderMap,
}

impl RequestHead {
    /// A head from proxy-wasm's serialized request header map (what
    /// `proxy_get_header_map_pairs` returns); pseudo-headers that are missing are empty.
    pub fn from_header_map(map: Vec<u8>) -> RequestHead {
        let headers = HeaderMap(map);
        let mut head = RequestHead::default();
        // One pass, first value of each; Envoy puts the pseudo-headers first, so it stops early.
        let mut found = [false; 3];
        for (name, value) in headers.pairs() {
            let (i, field) = match name {
                b":method" => (0, &mut head.method),
                b":path" => (1, &mut head.path),
                b":authority" => (2, &mut head.authority),
                _ => continue,
            };
            if let Some(seen @ false) = found.get_mut(i) {
                *seen = true;
                *field = String::from_utf8_lossy(value).into_owned();
            }
            if found == [true; 3] {
                break;
            }
        }
        head.headers = headers;
        head
    }

    /// A head from its parts (tests, tools).
    pub fn new(method: &str, path: &str, authority: &str, headers: &[(&str, &str)]) -> RequestHead {
        let mut all = vec![(":method", method), (":path", path), (":authority", authority)];
        all.extend_from_slice(headers);
        RequestHead::from_header_map(HeaderMap::serialize(&all))
    }

    /// The first value of header `name` (any case); a value that is not UTF-8 is absent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
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

/// A header map as proxy-wasm serializes it: the number of pairs (u32, little-endian), each
/// pair's name and value lengths (u32 each), then each name and value followed by a NUL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderMap(Vec<u8>);

impl HeaderMap {
    pub fn serialize(pairs: &[(&str, &str)]) -> Vec<u8> {
        let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
        let mut out = len32(pairs.len()).to_vec();
        for (name, value) in pairs {
            out.extend_from_slice(&len32(name.len()));
            out.extend_from_slice(&len32(value.len()));
        }
        for (name, value) in pairs {
            for part in [name, value] {
                out.extend_from_slice(part.as_bytes());
                out.push(0);
            }
        }
        out
    }

    /// The value of the first pair named `name` (any case).
    fn get(&self, name: &str) -> Option<&str> {
        self.pairs()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The pairs, in order; a map cut short ends early.
    fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let b = self.0.as_slice();
        let u32_at = |at: usize| -> Option<usize> {
            let bytes: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
            usize::try_from(u32::from_le_bytes(bytes)).ok()
        };
        let count = u32_at(0).unwrap_or(0);
        let mut data = count.checked_mul(8).and_then(|n| n.checked_add(4));
        (0..count).map_while(move |i| {
            let lengths = i.checked_mul(8)?.checked_add(4)?;
            let (name_len, value_len) = (u32_at(lengths)?, u32_at(lengths.checked_add(4)?)?);
            let name_at = data?;
            let value_at = name_at.checked_add(name_len)?.checked_add(1)?;
            let end = value_at.checked_add(value_len)?;
            let pair = (b.get(name_at..value_at - 1)?, b.get(value_at..end)?);
            data = end.checked_add(1);
            Some(pair)
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
    use proptest::prelude::*;

    #[test]
    fn query_params_are_decoded() {
        let r = RequestHead::new("GET", "/x?a=1&user_key=ab%2Fc+d&a=2", "h", &[]);
        assert_eq!(r.query_param("user_key").as_deref(), Some("ab/c d"));
        assert_eq!(r.query_param("a").as_deref(), Some("1"));
        assert_eq!(r.query_param("zz"), None);
        let encoded_name = RequestHead::new("GET", "/x?user%5Fkey=k&a+b=2", "h", &[]);
        assert_eq!(encoded_name.query_param("user_key").as_deref(), Some("k"));
        assert_eq!(encoded_name.query_param("a b").as_deref(), Some("2"));
    }

    #[test]
    fn headers_are_read_in_place_from_the_serialized_map() {
        let r = RequestHead::new(
            "POST",
            "/p?q",
            "api.example.com",
            &[("user_key", "k1"), ("User_Key", "k2"), (":path", "/second")],
        );
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.authority.as_str()),
            ("POST", "/p?q", "api.example.com"),
            "the first of each pseudo-header"
        );
        assert_eq!(r.header("USER_KEY"), Some("k1"));
        assert_eq!(r.header("app_id"), None);
        // As Envoy lays it out: count, lengths, then NUL-terminated names and values.
        let map = HeaderMap::serialize(&[("a", "bc")]);
        assert_eq!(map, [1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'a', 0, b'b', b'c', 0]);
        let pairs: Vec<_> = HeaderMap(map).pairs().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        assert_eq!(pairs, vec![(b"a".to_vec(), b"bc".to_vec())]);
    }

    #[test]
    fn a_short_or_empty_map_is_a_head_without_headers() {
        assert_eq!(RequestHead::from_header_map(Vec::new()), RequestHead::default());
        let mut cut = HeaderMap::serialize(&[(":method", "GET"), (":path", "/x")]);
        cut.truncate(cut.len() - 3);
        let r = RequestHead::from_header_map(cut);
        assert_eq!((r.method.as_str(), r.path.as_str()), ("GET", ""));
    }

    proptest! {
        #[test]
        fn every_pair_serialized_is_read_back(pairs in proptest::collection::vec(("[a-z:-]{0,12}", "\\PC{0,20}"), 0..12)) {
            let refs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            let map = HeaderMap(HeaderMap::serialize(&refs));
            let back: Vec<(Vec<u8>, Vec<u8>)> = map.pairs().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
            let sent: Vec<(Vec<u8>, Vec<u8>)> = pairs.iter().map(|(n, v)| (n.clone().into_bytes(), v.clone().into_bytes())).collect();
            prop_assert_eq!(back, sent);
            for (n, v) in &refs {
                let first = refs.iter().find(|(m, _)| m.eq_ignore_ascii_case(n)).map(|(_, v)| *v);
                prop_assert_eq!(map.get(n), first.or(Some(v)));
            }
        }

        #[test]
        fn no_bytes_make_it_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), name in "[a-z:]{0,6}") {
            let r = RequestHead::from_header_map(bytes);
            let _ = r.header(&name);
        }
    }
}
