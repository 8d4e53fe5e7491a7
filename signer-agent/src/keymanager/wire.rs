//! Wire types of the keymanager API, local keystores (`keymanager-APIs`,
//! `apis/local_keystores.yaml`), as the standard defines their JSON.

use failover_common::types::Pubkey;
use serde::{Deserialize, Serialize};

/// The keymanager API error body (`types/error_response.yaml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// Detailed error message.
    pub message: String,
}

/// One key of `ListKeysResponse.data`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListedKey {
    /// The validator's BLS public key (`0x` + 96 hex digits).
    pub validating_pubkey: Pubkey,
    /// EIP-2334 derivation path from the keystore, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derivation_path: Option<String>,
    /// True when the key cannot be deleted through the API (never, here).
    pub readonly: bool,
}

/// `GET /eth/v1/keystores` answer (`ListKeysResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListKeysResponse {
    /// The decrypted keys, sorted by pubkey.
    pub data: Vec<ListedKey>,
}

/// `POST /eth/v1/keystores` body. Deliberately without `Debug`: it holds passwords.
#[derive(Deserialize)]
pub struct ImportKeystoresRequest {
    /// EIP-2335 keystores, each as a JSON string.
    pub keystores: Vec<String>,
    /// `passwords[i]` unlocks `keystores[i]`.
    pub passwords: Vec<String>,
    /// An EIP-3076 interchange (format version 5) as a JSON string, optional.
    #[serde(default)]
    pub slashing_protection: Option<String>,
}

/// Per-keystore status of an import (keymanager API enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportStatus {
    /// Decrypted, its history imported, stored in `keystores_dir`, and usable.
    Imported,
    /// Its pubkey is already loaded (or earlier in the same request); nothing changed.
    Duplicate,
    /// Not imported; `message` says why.
    Error,
}

/// One entry of a per-key status list: `{status, message?}` (keymanager API, the `data` items
/// of `ImportKeystoresResponse` and `DeleteKeysResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStatus<S> {
    /// The outcome.
    pub status: S,
    /// Why, for `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One entry of `ImportKeystoresResponse.data`.
pub type ImportResult = KeyStatus<ImportStatus>;

/// `POST /eth/v1/keystores` answer (`ImportKeystoresResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportKeystoresResponse {
    /// One result per `request.keystores`, same order.
    pub data: Vec<ImportResult>,
}

/// `DELETE /eth/v1/keystores` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteKeysRequest {
    /// Public keys to delete (`0x` + 96 hex digits).
    pub pubkeys: Vec<String>,
}

/// Per-pubkey status of a deletion (keymanager API enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteStatus {
    /// The key was active; it can sign no more, its files are gone, and its history is in
    /// `slashing_protection`.
    Deleted,
    /// Not active here, but the coordinators hold a history for it, returned in
    /// `slashing_protection`.
    NotActive,
    /// Not active here and no history: nothing returned.
    NotFound,
    /// Something failed; `message` says what, and whether the key can still sign.
    Error,
}

/// One entry of `DeleteKeysResponse.data`.
pub type DeleteResult = KeyStatus<DeleteStatus>;

/// `DELETE /eth/v1/keystores` answer (`DeleteKeysResponse`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteKeysResponse {
    /// One result per `request.pubkeys`, same order.
    pub data: Vec<DeleteResult>,
    /// EIP-3076 interchange (JSON string) of the `deleted` and `not_active` keys; absent only
    /// when the history could not be exported (every status is then `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slashing_protection: Option<String>,
}

pub(super) fn import_error(message: impl Into<String>) -> ImportResult {
    ImportResult {
        status: ImportStatus::Error,
        message: Some(message.into()),
    }
}

pub(super) fn delete_error(message: impl Into<String>) -> DeleteResult {
    DeleteResult {
        status: DeleteStatus::Error,
        message: Some(message.into()),
    }
}
