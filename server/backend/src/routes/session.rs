//! Demo sign-in: a name is an account. `POST /api/session`, `GET` and
//! `DELETE` it, and the user search that starts a direct room.

use axum::extract::{RawQuery, State};
use axum::http::header::SET_COOKIE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::{query_params, Body, ClientIp, CurrentUser};
use crate::limits::Action;
use crate::names::{clean_name, normalize_name};
use crate::store::users;
use crate::{ids, session, Backend};

/// The longest display name, in characters (after trimming).
const MAX_NAME_CHARS: usize = 40;

/// How many users a search returns at most.
const MAX_SEARCH_RESULTS: usize = 20;

/// `POST /api/session` `{"name"}`: signs in as the user of that name, creating
/// it the first time.
pub(crate) async fn sign_in(
    State(backend): State<Backend>,
    ClientIp(ip): ClientIp,
    body: Body,
) -> Result<Response, ApiError> {
    backend.check_rate(Action::SignIn, None, ip)?;
    let name = clean_name(
        body.string("name", "invalid_name")?,
        MAX_NAME_CHARS,
        "invalid_name",
        "name",
    )?;
    let new_id = ids::random_id("u_")?;
    let (user, generation) = backend
        .write(move |tx, _| {
            let user = users::find_or_create_by_name(tx, &name, &new_id, ids::now_ms())?;
            let (_, generation) = users::find_with_generation(tx, &user.id)?
                .ok_or_else(|| ApiError::internal("the user vanished while signing in"))?;
            Ok((user, generation))
        })
        .await?;
    let token = session::issue(
        backend.session_secret(),
        &user.id,
        generation,
        ids::now_unix(),
    )
    .ok_or_else(|| ApiError::internal("unable to key the session MAC"))?;
    let cookie = session::set_cookie(&token);
    Ok((
        [(SET_COOKIE, cookie)],
        Json(json!({ "user": user, "token": token })),
    )
        .into_response())
}

/// `GET /api/session`: who am I.
pub(crate) async fn me(CurrentUser(user): CurrentUser) -> Json<Value> {
    Json(json!({ "user": user }))
}

/// `DELETE /api/session`: signs the user out everywhere: every token of
/// theirs stops working (cookie or bearer, on every device), the broker
/// closes the connections they signed in on, and the cookie is cleared.
/// Without a valid session it only clears the cookie.
pub(crate) async fn sign_out(
    State(backend): State<Backend>,
    me: Result<CurrentUser, ApiError>,
) -> Result<Response, ApiError> {
    if let Ok(CurrentUser(me)) = me {
        backend
            .write(move |tx, outbox| {
                users::revoke_sessions(tx, &me.id)?;
                outbox.terminate_connections(tx, &me.id)
            })
            .await?;
    }
    Ok((
        StatusCode::NO_CONTENT,
        [(SET_COOKIE, session::clear_cookie())],
    )
        .into_response())
}

/// `GET /api/users?query=`: other users whose name starts with `query`
/// (ASCII case-insensitive), by name, at most 20.
pub(crate) async fn search_users(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = query_params(query.as_deref());
    // Names are stored normalized; so is what is looked for.
    let prefix: String = normalize_name(params.get("query").and_then(Value::as_str).unwrap_or(""))
        .chars()
        .take(MAX_NAME_CHARS)
        .collect();
    let users = backend
        .db(move |conn| {
            Ok(users::search_by_name_prefix(
                conn,
                &prefix,
                &me.id,
                MAX_SEARCH_RESULTS,
            )?)
        })
        .await?;
    Ok(Json(json!({ "users": users })))
}
