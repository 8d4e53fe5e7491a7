//! The error body of every non-2xx coordinator answer, with its typed code.
//!
//! Invariants:
//! - every code has one HTTP status ([`ErrorCode::status`]); the coordinator's API layer is the
//!   only place that builds error answers, and it takes the status from here;
//! - a code is serialized as its `snake_case` name, the strings the API has always used, and a
//!   code this build does not know decodes as [`ErrorCode::Unknown`], so an older client keeps
//!   reading a newer coordinator's errors.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::agent::AgentId;

/// Stable, machine-readable code of a coordinator error (`ApiErrorBody.code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed (JSON, unknown fields, values out of range).
    BadRequest,
    /// 400: a message or interchange entry lies too far ahead of the chain's current epoch
    /// (`limits.max_future_epochs`).
    FutureEpoch,
    /// 401: missing or unknown bearer token.
    Unauthorized,
    /// 403: a valid token used where its principal may not act, or an operator rule (the
    /// two-person rule) forbids the action.
    Forbidden,
    /// 403: the record batch's `(agent, token)` is not the current holder and fencing token
    /// (DESIGN.md I2). The body names the current `holder` and `token`.
    NotHolder,
    /// 403: an internal (Raft) request from a node that is not a member.
    NotJoined,
    /// 404: no such handover (or other object).
    NotFound,
    /// 404: the node id is not a member (or, for promote, not a learner).
    UnknownNode,
    /// 409: the request conflicts with the current state (a handover already open, …).
    Conflict,
    /// 409: the URL answers as another node id.
    WrongNode,
    /// 409: the id is already a member in another role or at another URL.
    AlreadyMember,
    /// 409: the node to add could not be reached from the leader.
    NodeUnreachable,
    /// 409: the learner to promote lags behind.
    NotCaughtUp,
    /// 409: another membership change is running or not yet committed.
    ChangeInProgress,
    /// 409: the change would leave no voter.
    NoVotersLeft,
    /// 409: the voters after the change would not hold a majority of reachable, caught-up
    /// nodes.
    WouldLoseQuorum,
    /// 429: this address failed to authenticate too often; `Retry-After` says when to retry.
    TooManyAuthFailures,
    /// 500: the coordinator hit an unexpected internal state.
    Internal,
    /// 503: no quorum, no leader, or no answer in time; the outcome may be unknown. The body
    /// may carry the leader's URL (`leader_hint`).
    Unavailable,
    /// 504: the learner was added but had not caught up in time; it keeps replicating.
    CatchUpTimeout,
    /// A code this build does not know (from a newer coordinator); judge by the HTTP status.
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// Every code a coordinator answers with ([`ErrorCode::Unknown`] is only ever decoded).
    pub const ALL: [ErrorCode; 20] = [
        Self::BadRequest,
        Self::FutureEpoch,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotHolder,
        Self::NotJoined,
        Self::NotFound,
        Self::UnknownNode,
        Self::Conflict,
        Self::WrongNode,
        Self::AlreadyMember,
        Self::NodeUnreachable,
        Self::NotCaughtUp,
        Self::ChangeInProgress,
        Self::NoVotersLeft,
        Self::WouldLoseQuorum,
        Self::TooManyAuthFailures,
        Self::Internal,
        Self::Unavailable,
        Self::CatchUpTimeout,
    ];

    /// The HTTP status this code is answered with (for [`ErrorCode::Unknown`]: 500).
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest | Self::FutureEpoch => 400,
            Self::Unauthorized => 401,
            Self::Forbidden | Self::NotHolder | Self::NotJoined => 403,
            Self::NotFound | Self::UnknownNode => 404,
            Self::Conflict
            | Self::WrongNode
            | Self::AlreadyMember
            | Self::NodeUnreachable
            | Self::NotCaughtUp
            | Self::ChangeInProgress
            | Self::NoVotersLeft
            | Self::WouldLoseQuorum => 409,
            Self::TooManyAuthFailures => 429,
            Self::Internal | Self::Unknown => 500,
            Self::Unavailable => 503,
            Self::CatchUpTimeout => 504,
        }
    }

    /// The wire name (`not_holder`, `catch_up_timeout`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::FutureEpoch => "future_epoch",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotHolder => "not_holder",
            Self::NotJoined => "not_joined",
            Self::NotFound => "not_found",
            Self::UnknownNode => "unknown_node",
            Self::Conflict => "conflict",
            Self::WrongNode => "wrong_node",
            Self::AlreadyMember => "already_member",
            Self::NodeUnreachable => "node_unreachable",
            Self::NotCaughtUp => "not_caught_up",
            Self::ChangeInProgress => "change_in_progress",
            Self::NoVotersLeft => "no_voters_left",
            Self::WouldLoseQuorum => "would_lose_quorum",
            Self::TooManyAuthFailures => "too_many_auth_failures",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::CatchUpTimeout => "catch_up_timeout",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Error body of every non-2xx coordinator response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    /// Stable code; its HTTP status is [`ErrorCode::status`].
    pub code: ErrorCode,
    /// Human-readable message (never contains secrets).
    pub message: String,
    /// For `not_holder`: the current holder, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<AgentId>,
    /// For `not_holder`: the current token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<u64>,
    /// For `unavailable` on a follower: the leader's URL, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_hint: Option<String>,
}

impl ApiErrorBody {
    /// A body with `code` and `message` and no extra fields.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            holder: None,
            token: None,
            leader_hint: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_keep_their_wire_names_and_unknown_ones_still_decode() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert_eq!(serde_json::from_str::<ErrorCode>(&json).unwrap(), code);
        }
        let body: ApiErrorBody =
            serde_json::from_str(r#"{"code":"brand_new","message":"m"}"#).unwrap();
        assert_eq!(body.code, ErrorCode::Unknown);
        assert_eq!(ErrorCode::NotHolder.status(), 403);
        assert_eq!(ErrorCode::CatchUpTimeout.status(), 504);
    }
}
