//! Demo sign-in: a name is an account. `POST /api/session`, `GET` and
//! `DELETE` it, and the user search that starts a direct room.

use axum::extract::{RawQuery, State};
use axum::http::header::SET_COOKIE;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rusqlite::{params, OptionalExtension};
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::{query_params, Body, CurrentUser, User};
use crate::{ids, session, Backend};

/// The longest display name, in characters (after trimming).
pub(crate) const MAX_NAME_CHARS: usize = 40;

/// How many users a search returns at most.
const MAX_SEARCH_RESULTS: usize = 20;

/// Checks a name or room name: trimmed, 1..=`max` characters, no control
/// characters.
pub(crate) fn clean_name<'a>(
    raw: &'a str,
    max: usize,
    code: &'static str,
    what: &str,
) -> Result<&'a str, ApiError> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > max {
        return Err(ApiError::bad_request(
            code,
            format!("unable to use the {what}; it must be 1 to {max} characters after trimming"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            code,
            format!("unable to use the {what}; it contains control characters"),
        ));
    }
    Ok(name)
}

/// `POST /api/session` `{"name"}`: signs in as the user of that name, creating
/// it the first time.
pub(crate) async fn sign_in(
    State(backend): State<Backend>,
    body: Body,
) -> Result<Response, ApiError> {
    let name = clean_name(
        body.string("name", "invalid_name")?,
        MAX_NAME_CHARS,
        "invalid_name",
        "name",
    )?
    .to_owned();
    let new_id = ids::random_id("u_")?;
    let user = backend
        .db(move |conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let existing: Option<String> = tx
                .query_row(
                    "SELECT id FROM users WHERE name = ?1",
                    params![name],
                    |row| row.get(0),
                )
                .optional()?;
            let id = match existing {
                Some(id) => id,
                None => {
                    tx.execute(
                        "INSERT INTO users (id, name, created_at) VALUES (?1, ?2, ?3)",
                        params![new_id, name, ids::now_ms()],
                    )?;
                    new_id
                }
            };
            tx.commit()?;
            Ok(User { id, name })
        })
        .await?;
    let token = session::issue(backend.session_secret(), &user.id, ids::now_unix())
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

/// `DELETE /api/session`: clears the cookie (tokens are stateless, so a
/// bearer token stays valid until it expires).
pub(crate) async fn sign_out() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(SET_COOKIE, session::clear_cookie())],
    )
        .into_response()
}

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
fn like_prefix(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// `GET /api/users?query=`: other users whose name starts with `query`
/// (ASCII case-insensitive), by name, at most 20.
pub(crate) async fn search_users(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let params = query_params(query.as_deref());
    let prefix: String = params
        .get("query")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .chars()
        .take(MAX_NAME_CHARS)
        .collect();
    let users = backend
        .db(move |conn| {
            let mut statement = conn.prepare(
                "SELECT id, name FROM users WHERE name LIKE ?1 ESCAPE '\\' AND id <> ?2 ORDER BY name LIMIT ?3",
            )?;
            let users = statement
                .query_map(
                    params![like_prefix(&prefix), me.id, MAX_SEARCH_RESULTS as i64],
                    |row| {
                        Ok(User {
                            id: row.get(0)?,
                            name: row.get(1)?,
                        })
                    },
                )?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(users)
        })
        .await?;
    Ok(Json(json!({ "users": users })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            clean_name("  Ada ", 40, "invalid_name", "name").unwrap(),
            "Ada"
        );
        assert!(clean_name(&"é".repeat(40), 40, "invalid_name", "name").is_ok());
        for bad in ["", "   ", "a\nb", "\u{7}", &"x".repeat(41)] {
            assert_eq!(
                clean_name(bad, 40, "invalid_name", "name")
                    .unwrap_err()
                    .code(),
                "invalid_name"
            );
        }
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_prefix("a%b_c\\"), "a\\%b\\_c\\\\%");
    }
}
