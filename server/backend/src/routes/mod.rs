//! The HTTP API (documented in `API.md`).

mod e2ee;
mod messages;
mod realtime;
mod rooms;
mod session;

use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use axum::Router;

use crate::extract::MAX_BODY_BYTES;
use crate::Backend;

pub(crate) fn router(backend: Backend) -> Router {
    Router::new()
        .route(
            "/api/session",
            post(session::sign_in)
                .get(session::me)
                .delete(session::sign_out),
        )
        .route("/api/users", get(session::search_users))
        .route("/api/rooms", post(rooms::create).get(rooms::list))
        .route("/api/rooms/{room_id}", get(rooms::show))
        .route("/api/rooms/{room_id}/members", post(rooms::add_member))
        .route(
            "/api/rooms/{room_id}/members/{user_id}",
            delete(rooms::remove_member),
        )
        .route(
            "/api/rooms/{room_id}/messages",
            post(messages::send).get(messages::history),
        )
        .route("/api/rooms/{room_id}/read", post(messages::mark_read))
        .route("/api/devices/{device_id}", put(e2ee::put_device))
        .route("/api/users/{user_id}/devices", get(e2ee::user_devices))
        .route("/api/rooms/{room_id}/devices", get(e2ee::room_devices))
        .route("/api/rooms/{room_id}/epoch", get(e2ee::current_epoch))
        .route("/api/rooms/{room_id}/epochs", post(e2ee::create_epoch))
        .route(
            "/api/rooms/{room_id}/epochs/{epoch}/shares",
            get(e2ee::key_share),
        )
        .route(
            "/api/rooms/{room_id}/epochs/{epoch}/devices",
            get(e2ee::epoch_devices),
        )
        .route("/realtime/auth", post(realtime::channel_auth))
        .route("/realtime/user-auth", post(realtime::user_auth))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(
            crate::csrf::refuse_forgeable_writes,
        ))
        .with_state(backend)
}
