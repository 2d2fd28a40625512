//! What a browser page on another origin can and cannot make the backend do:
//! cookie-authenticated writes need a JSON body (a form or `text/plain`
//! could be forged by any same-site page), and the CORS preflight allows the
//! bearer header by name.

use axum::body::Body;
use axum::http::{Method, Request};
use serde_json::json;
use tower::ServiceExt;

use crate::harness::*;

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn cookie_writes_need_a_json_body() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let cookie = format!("domvia_session={}", ada.token);
    let room_body = json!({ "kind": "group", "name": "Forged", "member_ids": [] })
        .to_string()
        .into_bytes();
    // What a forged form or fetch(no-cors) can send: form, text/plain,
    // multipart, or no Content-Type at all (a Blob body).
    for content_type in [
        FORM,
        "text/plain",
        "text/plain;charset=UTF-8",
        "multipart/form-data; boundary=x",
        "",
    ] {
        app.raw(
            Method::POST,
            "/api/rooms",
            None,
            content_type,
            Some(room_body.clone()),
            &[("cookie", &cookie)],
        )
        .await
        .expect_error(415, "json_required");
    }
    app.raw(
        Method::PUT,
        "/api/devices/ada-1",
        None,
        "text/plain",
        Some(json!({ "record": {} }).to_string().into_bytes()),
        &[("cookie", &cookie)],
    )
    .await
    .expect_error(415, "json_required");
    // A forged sign-in (login CSRF) is refused the same way.
    app.raw(
        Method::POST,
        "/api/session",
        None,
        "text/plain",
        Some(json!({ "name": "Mallory" }).to_string().into_bytes()),
        &[],
    )
    .await
    .expect_error(415, "json_required");
    // Nothing was created.
    let rooms = app.get("/api/rooms", &ada).await.expect(200);
    assert_eq!(rooms.body["rooms"], json!([]));

    // JSON with a cookie works; any body type with a bearer token works.
    app.raw(
        Method::POST,
        "/api/rooms",
        None,
        "application/json; charset=utf-8",
        Some(room_body.clone()),
        &[("cookie", &cookie)],
    )
    .await
    .expect(201);
    app.raw(
        Method::POST,
        "/api/rooms",
        Some(&ada.token),
        "text/plain",
        Some(room_body),
        &[],
    )
    .await
    .expect(201);
    // Reads and body-less deletes need no Content-Type.
    app.raw(
        Method::GET,
        "/api/rooms",
        None,
        "",
        None,
        &[("cookie", &cookie)],
    )
    .await
    .expect(200);
    app.raw(
        Method::DELETE,
        "/api/session",
        None,
        "",
        None,
        &[("cookie", &cookie)],
    )
    .await
    .expect(204);
}

fn channel_form(room: &str) -> Vec<u8> {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("socket_id", "1.1")
        .append_pair("channel_name", &format!("private-chat.room.{room}"))
        .finish()
        .into_bytes()
}

#[tokio::test]
async fn channel_auth_takes_a_form_only_from_its_own_origin() {
    let app = TestApp::new();
    let ada = app.sign_in("Ada").await;
    let room = app.group(&ada, &[]).await;
    let cookie = format!("domvia_session={}", ada.token);
    // pusher-js on the page's own origin: a form with the cookie.
    for headers in [
        vec![("cookie", cookie.as_str())],
        vec![
            ("cookie", cookie.as_str()),
            ("sec-fetch-site", "same-origin"),
        ],
        vec![
            ("cookie", cookie.as_str()),
            ("origin", "http://chat.test:7420"),
            ("host", "chat.test:7420"),
        ],
    ] {
        app.raw(
            Method::POST,
            "/realtime/auth",
            None,
            FORM,
            Some(channel_form(&room)),
            &headers,
        )
        .await
        .expect(200);
    }
    // Another origin of the same site (another port): refused.
    for headers in [
        vec![("cookie", cookie.as_str()), ("sec-fetch-site", "same-site")],
        vec![
            ("cookie", cookie.as_str()),
            ("sec-fetch-site", "cross-site"),
        ],
        vec![
            ("cookie", cookie.as_str()),
            ("origin", "http://chat.test:5173"),
            ("host", "chat.test:7420"),
        ],
    ] {
        app.raw(
            Method::POST,
            "/realtime/auth",
            None,
            FORM,
            Some(channel_form(&room)),
            &headers,
        )
        .await
        .expect_error(403, "cross_origin_form");
    }
    // text/plain is refused there as everywhere.
    app.raw(
        Method::POST,
        "/realtime/auth",
        None,
        "text/plain",
        Some(channel_form(&room)),
        &[("cookie", &cookie)],
    )
    .await
    .expect_error(415, "json_required");
    // A bearer token from another origin is fine (CORS lets it through, a
    // forged form cannot carry it).
    app.raw(
        Method::POST,
        "/realtime/auth",
        Some(&ada.token),
        FORM,
        Some(channel_form(&room)),
        &[
            ("origin", "http://chat.test:5173"),
            ("sec-fetch-site", "same-site"),
        ],
    )
    .await
    .expect(200);
}

#[tokio::test]
async fn cors_preflight_allows_the_bearer_header_by_name() {
    let app = TestApp::new();
    let router = app.router.clone().layer(domvia_backend::cors_layer());
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/rooms")
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-socket-id",
        )
        .body(Body::empty())
        .expect("a request");
    let response = router.oneshot(preflight).await.expect("infallible");
    assert!(response.status().is_success(), "{}", response.status());
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    assert_eq!(header("access-control-allow-origin"), "*");
    // `*` does not cover Authorization: it must be named.
    let allowed: Vec<String> = header("access-control-allow-headers")
        .split(',')
        .map(|h| h.trim().to_owned())
        .collect();
    for needed in ["authorization", "content-type", "x-socket-id"] {
        assert!(allowed.iter().any(|h| h == needed), "{allowed:?}");
    }
    assert!(!allowed.iter().any(|h| h == "*"), "{allowed:?}");
    let methods = header("access-control-allow-methods");
    for method in ["get", "post", "put", "delete"] {
        assert!(methods.contains(method), "{methods}");
    }
    assert!(header("access-control-allow-credentials").is_empty());

    // A real request: the client may read Retry-After.
    let ada = app.sign_in("Ada").await;
    let request = Request::builder()
        .uri("/api/rooms")
        .header("origin", "http://localhost:5173")
        .header("authorization", format!("Bearer {}", ada.token))
        .body(Body::empty())
        .expect("a request");
    let response = app
        .router
        .clone()
        .layer(domvia_backend::cors_layer())
        .oneshot(request)
        .await
        .expect("infallible");
    let exposed = response
        .headers()
        .get("access-control-expose-headers")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    assert!(exposed.contains("retry-after"), "{exposed:?}");
}
