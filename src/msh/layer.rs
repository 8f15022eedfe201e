//! The thin layer over the generated calls: sending a business document, reading one,
//! marking it read, application receipts and statuses, and the API's error body.

use std::num::NonZeroU32;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use uuid::Uuid;

use super::generated::API;
use super::types::{
    AppRecError, AppRecStatus, ApprecInfo, ErrorMessage, PostAppRecRequest, PostMessageRequest,
    StatusInfo,
};
use super::{Client, Error, MAX_REQUEST};

/// The content type of every business document.
const XML: &str = "application/xml";

/// The transfer encoding of every business document.
const BASE64: &str = "base64";

/// A request of `operation` that cannot be made: `message` says why.
async fn refused(operation: &'static str, message: String) -> Error {
    Error::from_progenitor(
        &API,
        operation,
        progenitor_client::Error::<()>::InvalidRequest(message),
    )
    .await
}

/// A HER-id as a path segment: a positive number.
async fn her_id(operation: &'static str, name: &str, her_id: i32) -> Result<NonZeroU32, Error> {
    match u32::try_from(her_id).ok().and_then(NonZeroU32::new) {
        Some(her_id) => Ok(her_id),
        None => Err(refused(
            operation,
            format!("{name} {her_id} is not a HER-id: HER-ids are positive numbers"),
        )
        .await),
    }
}

/// The HER-ids in the `Ident/Id` elements inside the first `Sender` element of a
/// MsgHead, or `None` when it has no `Sender`. Elements are matched by local name (any
/// namespace prefix); this reads what routing needs, it validates nothing else.
fn sender_her_ids(document: &str) -> Option<Vec<i64>> {
    let (start, end) = element(document, "Sender")?;
    let sender = &document[start..end];
    let mut ids = Vec::new();
    let mut rest = sender;
    while let Some((open, close)) = element(rest, "Id") {
        if let Ok(id) = rest[open..close].trim().parse() {
            ids.push(id);
        }
        rest = &rest[close..];
    }
    Some(ids)
}

/// The byte range of the content of the first element named `name` (local name) in
/// `text`: after its start tag, up to its end tag.
fn element(text: &str, name: &str) -> Option<(usize, usize)> {
    let mut at = 0;
    while let Some(offset) = text[at..].find('<') {
        let tag = at + offset + 1;
        let rest = &text[tag..];
        let end = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/')?;
        let qualified = &rest[..end];
        let local = qualified.rsplit(':').next().unwrap_or(qualified);
        if local == name && !qualified.starts_with(['/', '?', '!']) {
            let content = tag + rest.find('>')? + 1;
            if text[..content].ends_with("/>") {
                return Some((content, content));
            }
            let close = format!("</{qualified}");
            let close_at = text[content..].find(&close)? + content;
            return Some((content, close_at));
        }
        at = tag;
    }
    None
}

impl Client {
    /// Sends `business_document` from `from_her_id` to `to_her_ids`; the new message's
    /// id.
    ///
    /// The business document is the MsgHead (KITH's hodemelding), UTF-8 XML with its
    /// declaration, whose `Sender` is `from_her_id` and whose `Receiver`s include every
    /// one of `to_her_ids`: it is sent base64-encoded as `application/xml`, with
    /// `receiverHerIdsSubset` = `to_her_ids` (the receivers the API routes it to).
    ///
    /// # Errors
    /// Before anything is sent, an [`Error`] saying the request cannot be made when
    /// `to_her_ids` is empty or holds a number that is not a HER-id, when the document
    /// is not UTF-8, has no XML declaration, no `Sender`, or a `Sender` without
    /// `from_her_id`, or when the request would be larger than [`MAX_REQUEST`]. Then the
    /// API's answer: 400 naming an unknown HER-id (see [`describe`]), 403 when the
    /// tenant does not own `from_her_id`, 413 for a request over the API's limit.
    pub async fn send(
        &self,
        from_her_id: i32,
        to_her_ids: &[i32],
        business_document: &[u8],
    ) -> Result<Uuid, Error> {
        const OP: &str = "send";
        her_id(OP, "from_her_id", from_her_id).await?;
        if to_her_ids.is_empty() {
            return Err(
                refused(OP, "to_her_ids is empty: name at least one receiver".into()).await,
            );
        }
        for to in to_her_ids {
            her_id(OP, "a receiver", *to).await?;
        }
        // base64 makes 4 bytes of 3; the JSON around it is less than a kilobyte.
        let encoded = business_document.len().div_ceil(3).saturating_mul(4);
        if encoded.saturating_add(1024) > MAX_REQUEST {
            return Err(refused(
                OP,
                format!(
                    "the business document is {} bytes: base64-encoded in its request it is \
                     over the API's limit of {MAX_REQUEST} bytes (35 MiB)",
                    business_document.len()
                ),
            )
            .await);
        }
        let Ok(text) = std::str::from_utf8(business_document) else {
            return Err(refused(
                OP,
                "the business document is not UTF-8: the API takes UTF-8 XML".into(),
            )
            .await);
        };
        if !text.trim_start_matches('\u{feff}').starts_with("<?xml") {
            return Err(refused(
                OP,
                "the business document does not start with an XML declaration \
                 (<?xml version=\"1.0\" encoding=\"UTF-8\"?>): the API takes a MsgHead"
                    .into(),
            )
            .await);
        }
        match sender_her_ids(text) {
            None => {
                return Err(refused(
                    OP,
                    "the business document has no Sender: the API takes a MsgHead, whose \
                     MsgInfo/Sender names the sending HER-id"
                        .into(),
                )
                .await);
            }
            Some(ids) if !ids.contains(&i64::from(from_her_id)) => {
                return Err(refused(
                    OP,
                    format!(
                        "the business document's Sender is not HER-id {from_her_id}: the API \
                         sends from the MsgHead's Sender"
                    ),
                )
                .await);
            }
            Some(_) => {}
        }
        let request = PostMessageRequest {
            business_document: STANDARD.encode(business_document),
            content_type: XML.to_owned(),
            content_transfer_encoding: BASE64.to_owned(),
            eb_xml_overrides: None,
            receiver_her_ids_subset: Some(to_her_ids.to_vec()),
        };
        Ok(self.post_message(&request).await?.into_inner())
    }

    /// The business document of message `id`, decoded from its transfer encoding (the
    /// MsgHead, or an AppRec for an application receipt). The first fetch by a receiver
    /// confirms the delivery (`Acknowledged`).
    ///
    /// # Errors
    /// The API's answer (404 for an unknown id, 403 for a message that is not the
    /// tenant's), or an [`Error`] saying the answer is not what the document describes
    /// when the document is not base64.
    pub async fn business_document(&self, id: Uuid) -> Result<Vec<u8>, Error> {
        let answer = self.get_business_document(&id).await?.into_inner();
        let encoding = answer.content_transfer_encoding.trim();
        if !encoding.eq_ignore_ascii_case(BASE64) {
            return Err(undecodable(format!(
                "contentTransferEncoding {} is not base64",
                crate::text::escape(encoding)
            ))
            .await);
        }
        match STANDARD.decode(answer.business_document.trim()) {
            Ok(bytes) => Ok(bytes),
            Err(e) => Err(undecodable(format!("businessDocument is not base64: {e}")).await),
        }
    }

    /// Marks message `id` read for its receiver `her_id`: it leaves that receiver's
    /// unread list (and so [`inbox`](Self::inbox)) for good. Marking it again is no error.
    ///
    /// # Errors
    /// `her_id` not a HER-id (before anything is sent); the API's answer (404, 403, 400
    /// when `her_id` is not a receiver of the message).
    pub async fn mark_read(&self, id: Uuid, her_id: i32) -> Result<(), Error> {
        let her_id = self::her_id("mark_read", "her_id", her_id).await?;
        self.mark_message_as_read(&id, her_id).await?;
        Ok(())
    }

    /// Sends the application receipt of receiver `her_id` for message `id`: `Ok`, or
    /// `Rejected` with the errors found (each with its `errorCode`, from KITH's code list
    /// 8221, and details). Returns the id of the receipt, a message of its own that
    /// reaches the original sender's inbox (`isAppRec`).
    ///
    /// # Errors
    /// Before anything is sent: `her_id` not a HER-id, `Rejected` without errors, an
    /// error without an `errorCode`. Then the API's answer (400 for a second receipt or a
    /// receipt of a receipt, 403, 404).
    pub async fn send_apprec(
        &self,
        id: Uuid,
        her_id: i32,
        status: AppRecStatus,
        errors: Vec<AppRecError>,
    ) -> Result<Uuid, Error> {
        const OP: &str = "send_apprec";
        let her_id = self::her_id(OP, "her_id", her_id).await?;
        if status == AppRecStatus::Rejected && errors.is_empty() {
            return Err(refused(
                OP,
                "a Rejected application receipt names at least one error".into(),
            )
            .await);
        }
        if let Some(i) = errors
            .iter()
            .position(|e| e.error_code.as_deref().is_none_or(|c| c.trim().is_empty()))
        {
            return Err(refused(OP, format!("error {i} of the receipt has no errorCode")).await);
        }
        let request = PostAppRecRequest {
            app_rec_status: status,
            app_rec_error_list: (!errors.is_empty()).then_some(errors),
            eb_xml_overrides: None,
        };
        Ok(self.post_app_rec(&id, her_id, &request).await?.into_inner())
    }

    /// The application receipts of message `id` (one the tenant sent): one entry per
    /// receiver, `appRecStatus` `None` until that receiver's receipt arrives.
    ///
    /// # Errors
    /// The API's answer (404, 403).
    pub async fn apprecs(&self, id: Uuid) -> Result<Vec<ApprecInfo>, Error> {
        Ok(self.get_apprec_info(&id).await?.into_inner())
    }

    /// The status of message `id` per receiver: its transport delivery state
    /// (`Unconfirmed` until the receiver fetches it, then `Acknowledged`) and its
    /// receipt's status.
    ///
    /// # Errors
    /// The API's answer (404, 403).
    pub async fn status(&self, id: Uuid) -> Result<Vec<StatusInfo>, Error> {
        Ok(self.get_status(&id).await?.into_inner())
    }
}

/// An answer of `get_business_document` that cannot be decoded: `why`.
async fn undecodable(why: String) -> Error {
    use serde::de::Error as _;
    Error::from_progenitor(
        &API,
        "get_business_document",
        progenitor_client::Error::<()>::InvalidResponsePayload(
            bytes::Bytes::new(),
            serde_json::Error::custom(why),
        ),
    )
    .await
}

/// The API's own error body, `ErrorMessage` (`error`, `errorCode`, `validationErrors`,
/// `requestId`), when the API answered with one.
pub fn error_message(error: &Error) -> Option<ErrorMessage> {
    error.body_as()
}

/// The error in one line, as its `Display`, followed by the API's `validationErrors`
/// (each escaped), which name what is wrong with a 400: an unknown HER-id, a missing
/// header, a document that is not a MsgHead.
pub fn describe(error: &Error) -> String {
    let mut line = error.to_string();
    let problems = error_message(error)
        .and_then(|m| m.validation_errors)
        .unwrap_or_default();
    if !problems.is_empty() {
        line.push_str(": ");
        let problems: Vec<String> = problems.iter().map(|p| crate::text::escape(p)).collect();
        line.push_str(&problems.join("; "));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::sender_her_ids;

    #[test]
    fn the_sender_is_read_by_local_name() {
        let head = "<?xml version=\"1.0\"?><mh:MsgHead><mh:MsgInfo><mh:Sender><mh:Organisation>\
            <mh:Ident><mh:Id>111</mh:Id></mh:Ident><mh:Organisation><mh:Ident><mh:Id>222</mh:Id>\
            </mh:Ident></mh:Organisation></mh:Organisation></mh:Sender><mh:Receiver><mh:Ident>\
            <mh:Id>333</mh:Id></mh:Ident></mh:Receiver></mh:MsgInfo></mh:MsgHead>";
        assert_eq!(sender_her_ids(head), Some(vec![111, 222]));
        assert_eq!(sender_her_ids("<?xml version=\"1.0\"?><a><b/></a>"), None);
        assert_eq!(sender_her_ids("<Sender/>"), Some(vec![]));
        assert_eq!(sender_her_ids("<Sender><Id>x</Id>"), None);
    }
}
