//! A browser's view of the console over plain HTTP: the sign-in form with its CSRF cookie, a
//! signed-in session, and pages fetched and forms posted with the session's cookie and token
//! (redirects not followed, so a test sees where a form leads).

use super::TestApp;
use reqwest::redirect::Policy;

/// A client that does not follow redirects.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(Policy::none()).build().unwrap()
}

/// `name=value` of each Set-Cookie.
pub fn cookies(r: &reqwest::Response) -> Vec<(String, String)> {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            v.split(';')
                .next()?
                .split_once('=')
                .map(|(n, v)| (n.to_string(), v.to_string()))
        })
        .collect()
}

/// The first `_csrf` value of a page.
pub fn csrf_of(page: &str) -> String {
    page.split("name=\"_csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_string()
}

/// The sign-in form's CSRF token and cookie.
pub async fn sign_in_form(app: &TestApp) -> (String, String) {
    sign_in_form_at(app, "/console").await
}

/// The CSRF token and cookie of the sign-in form under `root` (`/console`, `/portal`).
pub async fn sign_in_form_at(app: &TestApp, root: &str) -> (String, String) {
    let r = browser().get(app.url(&format!("{root}/sign_in"))).send().await.unwrap();
    let cookie = cookies(&r)
        .into_iter()
        .find(|(n, _)| n == "tollgate_sign_in")
        .unwrap()
        .1;
    (csrf_of(&r.text().await.unwrap()), cookie)
}

/// Posts the sign-in form; the response.
pub async fn sign_in(app: &TestApp, login: &str, password: &str) -> reqwest::Response {
    sign_in_at(app, "/console", login, password).await
}

/// Posts the sign-in form under `root`; the response.
pub async fn sign_in_at(app: &TestApp, root: &str, login: &str, password: &str) -> reqwest::Response {
    let (token, cookie) = sign_in_form_at(app, root).await;
    browser()
        .post(app.url(&format!("{root}/sign_in")))
        .header("cookie", format!("tollgate_sign_in={cookie}"))
        .form(&[
            ("_csrf", token.as_str()),
            ("login", login),
            ("password", password),
            ("next", &format!("{root}/")),
        ])
        .send()
        .await
        .unwrap()
}

/// Signs in; the session cookie.
pub async fn session(app: &TestApp, login: &str, password: &str) -> String {
    let r = sign_in(app, login, password).await;
    assert_eq!(r.status(), 303, "{:?}", r.text().await);
    cookies(&r)
        .into_iter()
        .find(|(n, _)| n == "tollgate_session")
        .unwrap()
        .1
}

/// A signed-in console user (or, [`Console::developer`], a developer in the portal).
pub struct Console {
    base: String,
    /// The session cookie's name and value.
    pub cookie_name: &'static str,
    pub cookie: String,
    pub csrf: String,
}

/// A page as fetched: status, `Location` (for a redirect), body.
pub struct Page {
    pub status: u16,
    pub location: String,
    pub body: String,
}

impl Console {
    /// Signs `login` in.
    pub async fn sign_in(app: &TestApp, login: &str, password: &str) -> Console {
        let cookie = session(app, login, password).await;
        let mut c = Console {
            base: app.url(""),
            cookie_name: "tollgate_session",
            cookie,
            csrf: String::new(),
        };
        c.csrf = csrf_of(&c.get("/console/").await.body);
        c
    }

    /// Signs developer `login` in to the portal.
    pub async fn developer(app: &TestApp, login: &str, password: &str) -> Console {
        let r = sign_in_at(app, "/portal", login, password).await;
        assert_eq!(r.status(), 303, "{:?}", r.text().await);
        let cookie = cookies(&r).into_iter().find(|(n, _)| n == "tollgate_portal").unwrap().1;
        let mut c = Console {
            base: app.url(""),
            cookie_name: "tollgate_portal",
            cookie,
            csrf: String::new(),
        };
        c.csrf = csrf_of(&c.get("/portal/").await.body);
        c
    }

    async fn page(r: reqwest::Response) -> Page {
        let location = r
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Page {
            status: r.status().as_u16(),
            location,
            body: r.text().await.unwrap(),
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        let r = browser()
            .get(format!("{}{path}", self.base))
            .header("cookie", format!("{}={}", self.cookie_name, self.cookie))
            .send()
            .await
            .unwrap();
        Self::page(r).await
    }

    /// Posts a form with the session's CSRF token.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let mut fields = vec![("_csrf", self.csrf.as_str())];
        fields.extend_from_slice(form);
        let r = browser()
            .post(format!("{}{path}", self.base))
            .header("cookie", format!("{}={}", self.cookie_name, self.cookie))
            .form(&fields)
            .send()
            .await
            .unwrap();
        Self::page(r).await
    }
}
