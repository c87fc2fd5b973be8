//! Mapping rules with 3scale's semantics: which metrics a request counts against.
//!
//! A rule is `{http_method, pattern, metric, delta, last}`. The pattern's path part matches the
//! request path as a prefix unless it ends with `$`; `{name}` matches one or more characters of
//! one segment (no `/`). An optional query part (`?a={x}&b=1`) must be satisfied by the request's
//! query. Every matching rule adds its delta, in position order, until a matching rule marked
//! `last` stops the scan.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MappingRule {
    pub http_method: String,
    pub pattern: String,
    pub metric_system_name: String,
    #[serde(default = "one")]
    pub delta: u64,
    #[serde(default)]
    pub last: bool,
    #[serde(default)]
    pub position: i64,
}

fn one() -> u64 {
    1
}

/// Usage of one request: `(metric system name, delta)`, one entry per metric.
pub type Usage = Vec<(String, u64)>;

/// Adds up the deltas of every rule matching the request. `None`: no rule matched.
pub fn usage_for(rules: &[MappingRule], method: &str, path_and_query: &str) -> Option<Usage> {
    let (path, query) = split(path_and_query);
    // Proxy configs list their rules in position order: then there is nothing to sort.
    if rules.is_sorted_by_key(|r| r.position) {
        return add_up(matched(rules.iter(), method, path, query));
    }
    let mut ordered: Vec<&MappingRule> = rules.iter().collect();
    ordered.sort_by_key(|r| r.position);
    add_up(matched(ordered.into_iter(), method, path, query))
}

/// The rules a request matches, in the order they count, up to the first matching `last`
/// rule: what [`usage_for`] adds up (the console's mapping-rule tester shows them).
pub fn matching<'a>(rules: &'a [MappingRule], method: &str, path_and_query: &str) -> Vec<&'a MappingRule> {
    let (path, query) = split(path_and_query);
    let mut ordered: Vec<&MappingRule> = rules.iter().collect();
    ordered.sort_by_key(|r| r.position);
    matched(ordered.into_iter(), method, path, query).collect()
}

fn split(path_and_query: &str) -> (&str, &str) {
    path_and_query.split_once('?').unwrap_or((path_and_query, ""))
}

/// The rules (in position order) that match, until a matching rule marked `last`.
fn matched<'a, 'r>(
    rules: impl Iterator<Item = &'a MappingRule> + 'r,
    method: &'r str,
    path: &'r str,
    query: &'r str,
) -> impl Iterator<Item = &'a MappingRule> + 'r
where
    'a: 'r,
{
    let mut stopped = false;
    rules
        .filter(move |rule| {
            (rule.http_method.eq_ignore_ascii_case(method) || rule.http_method.eq_ignore_ascii_case("ANY"))
                && rule_matches(&rule.pattern, path, query)
        })
        .take_while(move |rule| !std::mem::replace(&mut stopped, rule.last))
}

/// The deltas of `rules`, one entry per metric. `None`: no rule.
fn add_up<'a>(rules: impl Iterator<Item = &'a MappingRule>) -> Option<Usage> {
    let mut usage: Usage = Vec::new();
    let mut matched = false;
    for rule in rules {
        matched = true;
        match usage.iter_mut().find(|(m, _)| *m == rule.metric_system_name) {
            Some((_, d)) => *d = d.saturating_add(rule.delta),
            None => usage.push((rule.metric_system_name.clone(), rule.delta)),
        }
    }
    matched.then_some(usage)
}

fn rule_matches(pattern: &str, path: &str, query: &str) -> bool {
    let (pat_path, pat_query) = match pattern.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (pattern, None),
    };
    let (pat_path, anchored) = match pat_path.strip_suffix('$') {
        Some(p) => (p, true),
        None => (pat_path, false),
    };
    if !glob(pat_path.as_bytes(), path.as_bytes(), anchored) {
        return false;
    }
    match pat_query {
        None => true,
        Some(q) => q.split('&').filter(|p| !p.is_empty()).all(|wanted| {
            let (name, value) = wanted.split_once('=').unwrap_or((wanted, ""));
            query.split('&').any(|have| {
                let (n, v) = have.split_once('=').unwrap_or((have, ""));
                n == name && (is_var(value) || v == value)
            })
        }),
    }
}

fn is_var(s: &str) -> bool {
    s.len() >= 2 && s.starts_with('{') && s.ends_with('}')
}

/// Matches `pat` (literals and `{var}`s) against the start of `text`, or all of it if `anchored`.
fn glob(pat: &[u8], text: &[u8], anchored: bool) -> bool {
    match pat.split_first() {
        None => !anchored || text.is_empty(),
        Some((b'{', rest)) => match rest.iter().position(|&b| b == b'}') {
            Some(close) => {
                let after = rest.get(close + 1..).unwrap_or_default();
                // A variable takes one or more characters of the current segment.
                let segment_len = text.iter().position(|&b| b == b'/').unwrap_or(text.len());
                (1..=segment_len).any(|n| glob(after, text.get(n..).unwrap_or_default(), anchored))
            }
            None => text.first() == Some(&b'{') && glob(rest, text.get(1..).unwrap_or_default(), anchored),
        },
        Some((c, rest)) => text.first() == Some(c) && glob(rest, text.get(1..).unwrap_or_default(), anchored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(method: &str, pattern: &str, metric: &str, delta: u64) -> MappingRule {
        MappingRule {
            http_method: method.into(),
            pattern: pattern.into(),
            metric_system_name: metric.into(),
            delta,
            last: false,
            position: 0,
        }
    }

    #[test]
    fn root_rule_matches_everything_for_its_method() {
        let rules = [rule("GET", "/", "hits", 1)];
        assert_eq!(
            usage_for(&rules, "GET", "/anything/at/all?x=1"),
            Some(vec![("hits".into(), 1)])
        );
        assert_eq!(usage_for(&rules, "POST", "/anything"), None);
    }

    #[test]
    fn variables_anchors_and_queries() {
        let r = |p| [rule("GET", p, "m", 1)];
        assert!(usage_for(&r("/v1/word/{word}.json"), "GET", "/v1/word/hello.json").is_some());
        assert!(usage_for(&r("/v1/word/{word}.json"), "GET", "/v1/word/.json").is_none());
        assert!(usage_for(&r("/v1/word/{word}.json"), "GET", "/v1/word/a/b.json").is_none());
        assert!(usage_for(&r("/books$"), "GET", "/books").is_some());
        assert!(usage_for(&r("/books$"), "GET", "/books/1").is_none());
        assert!(usage_for(&r("/books"), "GET", "/books/1").is_some());
        assert!(usage_for(&r("/search?q={q}&lang=en"), "GET", "/search?lang=en&q=rust").is_some());
        assert!(usage_for(&r("/search?q={q}&lang=en"), "GET", "/search?lang=fr&q=rust").is_none());
        assert!(usage_for(&r("/search?q={q}"), "GET", "/search").is_none());
    }

    /// APIcast's way: the pattern's path becomes a regular expression, `{var}` one or more
    /// characters other than `/`, anchored at the start, and at the end with `$`.
    fn reference(pattern: &str, path: &str) -> bool {
        let (pat, anchored) = match pattern.strip_suffix('$') {
            Some(p) => (p, true),
            None => (pattern, false),
        };
        let mut re = String::from("^");
        let mut rest = pat;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else { break };
            re.push_str(&regex::escape(&rest[..open]));
            re.push_str("[^/]+");
            rest = &rest[open + close + 1..];
        }
        re.push_str(&regex::escape(rest));
        if anchored {
            re.push('$');
        }
        regex::Regex::new(&re).unwrap().is_match(path)
    }

    proptest::proptest! {
        #[test]
        fn the_matcher_agrees_with_the_reference(
            pattern in "(/(a|b|ab|\\{x\\}|\\{y\\}\\.json|c\\{z\\})){1,4}\\$?",
            path in "(/(a|b|ab|c|cab|a\\.json|x)){0,5}",
        ) {
            proptest::prop_assert_eq!(rule_matches(&pattern, &path, ""), reference(&pattern, &path), "{} vs {}", pattern, path);
        }
    }

    #[test]
    fn deltas_add_up_and_last_stops() {
        let mut rules = vec![
            rule("GET", "/", "hits", 1),
            rule("GET", "/a", "hits", 2),
            rule("GET", "/a", "m", 5),
        ];
        assert_eq!(
            usage_for(&rules, "GET", "/a"),
            Some(vec![("hits".into(), 3), ("m".into(), 5)])
        );
        rules[1].last = true;
        rules[1].position = 0;
        rules[0].position = 1;
        rules[2].position = 2;
        assert_eq!(usage_for(&rules, "GET", "/a"), Some(vec![("hits".into(), 2)]));
        // The tester's view: the rules that counted, in order, the `last` one ending the scan.
        assert_eq!(matching(&rules, "GET", "/a"), vec![&rules[1]]);
        rules[1].last = false;
        assert_eq!(matching(&rules, "GET", "/a?x=1"), vec![&rules[1], &rules[0], &rules[2]]);
        assert!(matching(&rules, "POST", "/a").is_empty());
    }
}
