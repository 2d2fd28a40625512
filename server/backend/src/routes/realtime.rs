//! Channel access: `/realtime/auth` signs a room channel subscription for a
//! member, `/realtime/user-auth` signs `pusher:signin`. Both take the form
//! body pusher-js sends, or JSON.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

use domvia_realtime::protocol::{
    authenticate_user, authorize_presence_channel, authorize_private_channel, chat_room_id,
    validate_socket_id, ChannelAuth, ChannelKind, UserAuth,
};

use crate::error::ApiError;
use crate::extract::{Body, CurrentUser};
use crate::store::rooms;
use crate::Backend;

fn socket_id(body: &Body) -> Result<String, ApiError> {
    let invalid = || {
        ApiError::bad_request(
            "invalid_socket_id",
            "unable to authorize; the socket id is not of the form \"1234.5678\"",
        )
    };
    let Some(Value::String(socket_id)) = body.0.get("socket_id") else {
        return Err(invalid());
    };
    validate_socket_id(socket_id).map_err(|_| invalid())?;
    Ok(socket_id.clone())
}

/// A signing failure after every check passed: the protocol's own code.
fn signing_failed(error: domvia_realtime::protocol::Error) -> ApiError {
    ApiError::bad_request(error.code(), error.to_string())
}

/// The one answer for every channel this user may not join, so that the
/// answer does not tell whether a room exists.
fn forbidden_channel() -> ApiError {
    ApiError::forbidden(
        "forbidden",
        "unable to authorize the channel; it is not a chat room you are a member of",
    )
}

/// `POST /realtime/auth` `socket_id=&channel_name=`: in this order, 401 if not
/// signed in, 400 for a bad socket id, 403 unless the channel is
/// `private-chat.room.{id}` or `presence-chat.room.{id}` of a room the user is
/// a member of; then the signature (presence members are the server's user id
/// and name).
pub(crate) async fn channel_auth(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    body: Body,
) -> Result<Json<ChannelAuth>, ApiError> {
    let socket_id = socket_id(&body)?;
    let channel_name = match body.0.get("channel_name") {
        Some(Value::String(name)) => name.clone(),
        _ => return Err(forbidden_channel()),
    };
    let Some((room_id, kind)) = chat_room_id(&channel_name) else {
        return Err(forbidden_channel());
    };
    let (room_id, user_id) = (room_id.to_owned(), me.id.clone());
    let member = backend
        .db(move |conn| Ok(rooms::is_member(conn, &room_id, &user_id)?))
        .await?;
    if !member {
        return Err(forbidden_channel());
    }
    let app = backend.app();
    let auth = match kind {
        ChannelKind::Presence => authorize_presence_channel(
            &app.key,
            &app.secret,
            &socket_id,
            &channel_name,
            &me.id,
            Some(&json!({ "name": me.name }).into()),
        ),
        _ => authorize_private_channel(&app.key, &app.secret, &socket_id, &channel_name),
    }
    .map_err(signing_failed)?;
    Ok(Json(auth))
}

/// `POST /realtime/user-auth` `socket_id=`: signs `pusher:signin` as the
/// signed-in user, `{"id", "user_info": {"name"}}`.
pub(crate) async fn user_auth(
    State(backend): State<Backend>,
    CurrentUser(me): CurrentUser,
    body: Body,
) -> Result<Json<UserAuth>, ApiError> {
    let socket_id = socket_id(&body)?;
    let app = backend.app();
    let user_data = json!({ "id": me.id, "user_info": { "name": me.name } });
    let auth = authenticate_user(&app.key, &app.secret, &socket_id, &user_data.into())
        .map_err(signing_failed)?;
    Ok(Json(auth))
}
