//! The business documents the Meldingstjener routes: what the emulator reads of a
//! MsgHead (KITH's hodemelding) and the AppRec it writes for an application receipt.
//!
//! The reader is a small, strict XML reader for what routing needs, not a validator:
//! elements are matched by their local name (any namespace prefix), a DOCTYPE is
//! refused (no entity expansion), and so is anything that is not well-formed in the
//! ways that matter here (unclosed or crossed elements, a second root, text outside
//! the root).
//!
//! What a MsgHead must hold, and how it is read:
//! - `MsgHead/MsgInfo/MsgId`: the business document id (`businessDocumentId`);
//! - `MsgHead/MsgInfo/GenDate`: when the document was made (`businessDocumentGenDate`;
//!   an offset or `Z`, or none for UTC; up to seven fractional digits);
//! - `MsgHead/MsgInfo/Sender` and each `MsgHead/MsgInfo/Receiver` (several stand for
//!   copy receivers): an `Organisation` whose `Ident` with `TypeId V="HER"` is the
//!   organisation's HER-id (level 1), and optionally a nested `Organisation`,
//!   `HealthcareProfessional` or `Service` whose `Ident` with `TypeId V="HER"` is the
//!   communication party's (level 2). The party's HER-id is the level-2 one when there
//!   is one, the level-1 one otherwise.

use chrono::{DateTime, Utc};

use crate::apis::register::dotnet::parse_dotnet;

/// The deepest nesting the reader follows.
const MAX_DEPTH: usize = 64;

/// An element: its local name, attributes, text and children.
#[derive(Debug, Default)]
pub(crate) struct Element {
    pub(crate) name: String,
    attributes: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
}

impl Element {
    /// The first child with this local name.
    pub(crate) fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The children with this local name.
    pub(crate) fn children<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// An attribute's value, by local name.
    pub(crate) fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The element's own text, trimmed.
    pub(crate) fn text(&self) -> &str {
        self.text.trim()
    }
}

/// The local part of a qualified name (`mh:MsgHead` -> `MsgHead`).
fn local(name: &str) -> &str {
    name.rsplit_once(':').map_or(name, |(_, local)| local)
}

/// Replaces XML's five entities and character references.
fn unescape(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let end = after
            .find(';')
            .ok_or_else(|| "an `&` that starts no entity".to_owned())?;
        let entity = &after[..end];
        let c = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(decimal) = entity.strip_prefix('#') {
                    decimal.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("an unknown entity `&{};`", entity.escape_debug()))?
            }
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Reads the attributes of a start tag's inside (after the name).
fn attributes(mut rest: &str) -> Result<Vec<(String, String)>, String> {
    let mut attributes = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Ok(attributes);
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| "an attribute without a value".to_owned())?;
        let name = rest[..eq].trim();
        let value = rest[eq + 1..].trim_start();
        let quote = value
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
            .ok_or_else(|| "an attribute value without quotes".to_owned())?;
        let value = &value[1..];
        let end = value
            .find(quote)
            .ok_or_else(|| "an attribute value that is not closed".to_owned())?;
        attributes.push((local(name).to_owned(), unescape(&value[..end])?));
        rest = &value[end + 1..];
    }
}

/// Parses a document into its root element.
///
/// # Errors
/// What is wrong with it, in words (never the document's content).
pub(crate) fn parse(document: &str) -> Result<Element, String> {
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut rest = document.strip_prefix('\u{feff}').unwrap_or(document);
    while !rest.is_empty() {
        let Some(open) = rest.find('<') else {
            text(&mut stack, rest)?;
            break;
        };
        text(&mut stack, &rest[..open])?;
        rest = &rest[open..];
        if let Some(after) = rest.strip_prefix("<?") {
            let end = after
                .find("?>")
                .ok_or_else(|| "a processing instruction that is not closed".to_owned())?;
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix("<!--") {
            let end = after
                .find("-->")
                .ok_or_else(|| "a comment that is not closed".to_owned())?;
            rest = &after[end + 3..];
        } else if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let end = after
                .find("]]>")
                .ok_or_else(|| "a CDATA section that is not closed".to_owned())?;
            let Some(current) = stack.last_mut() else {
                return Err("a CDATA section outside the root element".to_owned());
            };
            current.text.push_str(&after[..end]);
            rest = &after[end + 3..];
        } else if rest.starts_with("<!") {
            return Err("a DOCTYPE or declaration; business documents carry none".to_owned());
        } else if let Some(after) = rest.strip_prefix("</") {
            let end = after
                .find('>')
                .ok_or_else(|| "an end tag that is not closed".to_owned())?;
            let name = local(after[..end].trim());
            let element = stack
                .pop()
                .ok_or_else(|| format!("an end tag `{}` with no start", name.escape_debug()))?;
            if element.name != name {
                return Err(format!(
                    "the element `{}` is closed by `{}`",
                    element.name.escape_debug(),
                    name.escape_debug()
                ));
            }
            close(&mut stack, &mut root, element)?;
            rest = &after[end + 1..];
        } else {
            let after = &rest[1..];
            let end = after
                .find('>')
                .ok_or_else(|| "a start tag that is not closed".to_owned())?;
            let mut inside = &after[..end];
            let empty = inside.ends_with('/');
            if empty {
                inside = &inside[..inside.len() - 1];
            }
            let name_end = inside
                .find(|c: char| c.is_whitespace())
                .unwrap_or(inside.len());
            let name = &inside[..name_end];
            if name.is_empty() || name.contains(['<', '&', '"', '\'', '=']) {
                return Err("a malformed start tag".to_owned());
            }
            if root.is_some() {
                return Err("a second root element".to_owned());
            }
            if stack.len() == MAX_DEPTH {
                return Err(format!("elements nested more than {MAX_DEPTH} deep"));
            }
            let element = Element {
                name: local(name).to_owned(),
                attributes: attributes(&inside[name_end..])?,
                ..Element::default()
            };
            if empty {
                close(&mut stack, &mut root, element)?;
            } else {
                stack.push(element);
            }
            rest = &after[end + 1..];
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!(
            "the element `{}` is not closed",
            open.name.escape_debug()
        ));
    }
    root.ok_or_else(|| "no root element".to_owned())
}

/// Adds text to the open element; outside the root only white space is allowed.
fn text(stack: &mut [Element], text: &str) -> Result<(), String> {
    match stack.last_mut() {
        Some(current) => {
            current.text.push_str(&unescape(text)?);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err("text outside the root element".to_owned()),
    }
}

/// Hands a finished element to its parent, or makes it the root.
fn close(
    stack: &mut [Element],
    root: &mut Option<Element>,
    element: Element,
) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None if root.is_none() => *root = Some(element),
        None => return Err("a second root element".to_owned()),
    }
    Ok(())
}

/// A sender or receiver of a MsgHead: its organisation's HER-id and, when a unit or
/// person under it is named, that one's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Party {
    /// The organisation's HER-id (level 1).
    pub(crate) level1: i32,
    /// The HER-id of the unit, service or person under it (level 2).
    pub(crate) level2: Option<i32>,
}

impl Party {
    /// The communication party's HER-id: level 2 when named, level 1 otherwise.
    pub(crate) fn her_id(self) -> i32 {
        self.level2.unwrap_or(self.level1)
    }
}

/// What routing needs of a MsgHead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MsgHead {
    /// `MsgInfo/MsgId`.
    pub(crate) msg_id: String,
    /// `MsgInfo/GenDate`.
    pub(crate) gen_date: DateTime<Utc>,
    /// `MsgInfo/Type/@V`, when given.
    pub(crate) kind: Option<String>,
    pub(crate) sender: Party,
    /// One or more.
    pub(crate) receivers: Vec<Party>,
}

/// The HER-id of an element's `Ident` with `TypeId V="HER"`, if it has one.
fn her_ident(element: &Element, path: &str) -> Result<Option<i32>, String> {
    for ident in element.children("Ident") {
        let is_her = ident
            .child("TypeId")
            .and_then(|t| t.attribute("V"))
            .is_some_and(|v| v.eq_ignore_ascii_case("HER"));
        if !is_her {
            continue;
        }
        let id = ident.child("Id").map(Element::text).unwrap_or_default();
        return id
            .parse::<i32>()
            .ok()
            .filter(|id| *id > 0)
            .map(Some)
            .ok_or_else(|| {
                format!(
                    "{path}/Ident/Id `{}` is not a HER-id (a positive 32-bit integer)",
                    id.chars().take(40).collect::<String>().escape_debug()
                )
            });
    }
    Ok(None)
}

/// Reads a `Sender` or `Receiver`.
fn party(element: &Element, path: &str) -> Result<Party, String> {
    let organisation = element
        .child("Organisation")
        .ok_or_else(|| format!("{path} has no Organisation"))?;
    let path = format!("{path}/Organisation");
    let level1 = her_ident(organisation, &path)?
        .ok_or_else(|| format!("{path} has no Ident with a HER-id (TypeId V=\"HER\")"))?;
    let mut level2 = None;
    for unit in ["Organisation", "HealthcareProfessional", "Service"] {
        if let Some(under) = organisation.child(unit) {
            level2 = her_ident(under, &format!("{path}/{unit}"))?;
            if level2.is_some() {
                break;
            }
        }
    }
    Ok(Party { level1, level2 })
}

/// Reads what routing needs of a business document (the XML text).
///
/// # Errors
/// Each thing that is missing or wrong, in words.
pub(crate) fn read_msghead(document: &str) -> Result<MsgHead, String> {
    let root = parse(document).map_err(|e| format!("the business document is not XML: {e}"))?;
    if root.name == "AppRec" {
        return Err(
            "the business document is an AppRec: send application receipts with \
             POST /Messages/{id}/apprec/{appRecSenderHerId}"
                .to_owned(),
        );
    }
    if root.name != "MsgHead" {
        return Err(format!(
            "the business document's root element is `{}`; a MsgHead is expected",
            root.name
                .chars()
                .take(40)
                .collect::<String>()
                .escape_debug()
        ));
    }
    let info = root
        .child("MsgInfo")
        .ok_or_else(|| "the MsgHead has no MsgInfo".to_owned())?;
    let msg_id = info.child("MsgId").map(Element::text).unwrap_or_default();
    if msg_id.is_empty() {
        return Err("MsgHead/MsgInfo/MsgId is missing or empty".to_owned());
    }
    if msg_id.chars().count() > 100 {
        return Err("MsgHead/MsgInfo/MsgId is longer than 100 characters".to_owned());
    }
    let gen_date = info.child("GenDate").map(Element::text).unwrap_or_default();
    if gen_date.is_empty() {
        return Err("MsgHead/MsgInfo/GenDate is missing or empty".to_owned());
    }
    let gen_date = parse_dotnet(gen_date).map_err(|e| {
        format!(
            "MsgHead/MsgInfo/GenDate `{}` {e}",
            gen_date.chars().take(40).collect::<String>().escape_debug()
        )
    })?;
    let sender = party(
        info.child("Sender")
            .ok_or_else(|| "MsgHead/MsgInfo has no Sender".to_owned())?,
        "MsgHead/MsgInfo/Sender",
    )?;
    let receivers = info
        .children("Receiver")
        .map(|r| party(r, "MsgHead/MsgInfo/Receiver"))
        .collect::<Result<Vec<_>, _>>()?;
    if receivers.is_empty() {
        return Err("MsgHead/MsgInfo has no Receiver".to_owned());
    }
    Ok(MsgHead {
        msg_id: msg_id.to_owned(),
        gen_date,
        kind: info
            .child("Type")
            .and_then(|t| t.attribute("V"))
            .map(str::to_owned),
        sender,
        receivers,
    })
}

/// Whether the XML declaration on the first line names UTF-8 as the encoding, as the
/// Meldingstjener requires.
pub(crate) fn declares_utf8(document: &str) -> bool {
    let document = document.strip_prefix('\u{feff}').unwrap_or(document);
    let Some(declaration) = document.strip_prefix("<?xml") else {
        return false;
    };
    let Some(end) = declaration.find("?>") else {
        return false;
    };
    let declaration = &declaration[..end];
    declaration
        .split_once("encoding")
        .map(|(_, after)| {
            after
                .trim_start()
                .trim_start_matches('=')
                .trim_start()
                .trim_start_matches(['"', '\''])
                .get(..5)
                .is_some_and(|e| e.eq_ignore_ascii_case("utf-8"))
        })
        .unwrap_or(false)
}

/// Escapes text for XML content or a double-quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// What an AppRec says.
#[derive(Debug)]
pub(crate) struct AppRec<'a> {
    /// The new document's id.
    pub(crate) id: &'a str,
    /// When it was made, as written.
    pub(crate) gen_date: &'a str,
    /// The receipt's sender (the original message's receiver).
    pub(crate) sender: i32,
    /// The receipt's receiver (the original message's sender).
    pub(crate) receiver: i32,
    /// `1` (Ok), `2` (Avvist) or `3` (Ok, feil i delmelding).
    pub(crate) status: u8,
    /// The errors: code and details.
    pub(crate) errors: Vec<(String, String)>,
    /// The original message's MsgId, type and GenDate as written.
    pub(crate) original_id: &'a str,
    pub(crate) original_type: &'a str,
    pub(crate) original_date: &'a str,
}

impl AppRec<'_> {
    /// The AppRec document (KITH's apprec 1.1), UTF-8 with its declaration.
    pub(crate) fn write(&self) -> String {
        let status = match self.status {
            1 => "OK",
            2 => "Avvist",
            _ => "OK, feil i delmelding",
        };
        let mut errors = String::new();
        for (code, details) in &self.errors {
            errors.push_str(&format!(
                "  <Error V=\"{}\" S=\"2.16.578.1.12.4.1.1.8221\" DN=\"{}\"/>\n",
                escape(code),
                escape(details)
            ));
        }
        let party = |her_id: i32| {
            format!(
                "<HCP><Inst><Name>HER-id {her_id}</Name><Id>{her_id}</Id>\
                 <TypeId V=\"HER\" S=\"2.16.578.1.12.4.1.1.9051\" DN=\"HER-id\"/></Inst></HCP>"
            )
        };
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <AppRec xmlns=\"http://www.kith.no/xmlstds/apprec/2012-02-15\">\n\
             \x20 <MsgType V=\"APPREC\" S=\"2.16.578.1.12.4.1.1.8279\" DN=\"Applikasjonskvittering\"/>\n\
             \x20 <MIGversion>v1.1 2012-02-15</MIGversion>\n\
             \x20 <GenDate>{gen_date}</GenDate>\n\
             \x20 <Id>{id}</Id>\n\
             \x20 <Sender>{sender}</Sender>\n\
             \x20 <Receiver>{receiver}</Receiver>\n\
             \x20 <Status V=\"{code}\" S=\"2.16.578.1.12.4.1.1.8220\" DN=\"{status}\"/>\n\
             {errors}\
             \x20 <OriginalMsgId><MsgType V=\"{original_type}\"/><IssueDate>{original_date}</IssueDate>\
             <Id>{original_id}</Id></OriginalMsgId>\n\
             </AppRec>\n",
            gen_date = escape(self.gen_date),
            id = escape(self.id),
            sender = party(self.sender),
            receiver = party(self.receiver),
            code = self.status,
            original_type = escape(self.original_type),
            original_date = escape(self.original_date),
            original_id = escape(self.original_id),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<mh:MsgHead xmlns:mh="http://www.kith.no/xmlstds/msghead/2006-05-24">
  <mh:MsgInfo>
    <mh:Type V="DIALOG_HELSEFAGLIG" DN="Helsefaglig dialog"/>
    <mh:GenDate>2025-09-22T07:56:36.3095151+02:00</mh:GenDate>
    <mh:MsgId>b2d9 &amp; co</mh:MsgId>
    <mh:Sender><mh:Organisation><mh:OrganisationName>A</mh:OrganisationName>
      <mh:Ident><mh:Id>111</mh:Id><mh:TypeId V="HER"/></mh:Ident>
      <mh:Organisation><mh:Ident><mh:Id>999</mh:Id><mh:TypeId V="ENH"/></mh:Ident>
        <mh:Ident><mh:Id>112</mh:Id><mh:TypeId V='HER'/></mh:Ident></mh:Organisation>
    </mh:Organisation></mh:Sender>
    <mh:Receiver><mh:Organisation><mh:Ident><mh:Id>221</mh:Id><mh:TypeId V="HER"/></mh:Ident>
      <mh:HealthcareProfessional><mh:Ident><mh:Id>222</mh:Id><mh:TypeId V="HER"/></mh:Ident></mh:HealthcareProfessional>
    </mh:Organisation></mh:Receiver>
    <mh:Receiver><mh:Organisation><mh:Ident><mh:Id>331</mh:Id><mh:TypeId V="HER"/></mh:Ident></mh:Organisation></mh:Receiver>
  </mh:MsgInfo>
  <mh:Document><![CDATA[<not><parsed>]]></mh:Document>
</mh:MsgHead>
"#;

    #[test]
    fn a_msghead_gives_its_id_date_sender_and_receivers() {
        assert!(declares_utf8(DOCUMENT));
        let head = read_msghead(DOCUMENT).expect("a MsgHead");
        assert_eq!(head.msg_id, "b2d9 & co");
        assert_eq!(head.kind.as_deref(), Some("DIALOG_HELSEFAGLIG"));
        assert_eq!(
            head.gen_date.to_rfc3339(),
            "2025-09-22T05:56:36.309515100+00:00"
        );
        assert_eq!(head.sender.her_id(), 112);
        assert_eq!(head.sender.level1, 111);
        let receivers: Vec<i32> = head.receivers.iter().map(|r| r.her_id()).collect();
        assert_eq!(receivers, [222, 331]);
    }

    #[test]
    fn what_is_wrong_is_named() {
        let cases = [
            ("<a><b></a>", "the element `b` is closed by `a`"),
            ("<a>", "the element `a` is not closed"),
            ("<a/><b/>", "a second root element"),
            ("text", "text outside the root element"),
            ("<!DOCTYPE a [<!ENTITY x 'y'>]><a/>", "a DOCTYPE"),
            ("<a>&bogus;</a>", "an unknown entity `&bogus;`"),
            ("<MsgHead/>", "the MsgHead has no MsgInfo"),
            ("<AppRec/>", "the business document is an AppRec"),
            ("<Other/>", "root element is `Other`"),
        ];
        for (document, expected) in cases {
            let error = read_msghead(document).expect_err(document);
            assert!(error.contains(expected), "{document}: {error}");
        }
        let no_receiver = DOCUMENT
            .split("<mh:Receiver>")
            .next()
            .map(|head| format!("{head}</mh:MsgInfo></mh:MsgHead>"))
            .expect("a head");
        assert_eq!(
            read_msghead(&no_receiver).expect_err("no receiver"),
            "MsgHead/MsgInfo has no Receiver"
        );
        let bad_her = DOCUMENT.replace("<mh:Id>111</mh:Id>", "<mh:Id>-4</mh:Id>");
        assert!(
            read_msghead(&bad_her)
                .expect_err("bad HER-id")
                .contains("Sender/Organisation/Ident/Id `-4` is not a HER-id")
        );
        let deep = format!("{}{}", "<a>".repeat(100), "</a>".repeat(100));
        assert!(parse(&deep).expect_err("deep").contains("nested more than"));
        assert!(!declares_utf8(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>"
        ));
        assert!(!declares_utf8("<a/>"));
        assert!(declares_utf8("<?xml version='1.0' encoding='utf-8'?><a/>"));
    }

    #[test]
    fn the_apprec_written_reads_back() {
        let apprec = AppRec {
            id: "id-1",
            gen_date: "2025-09-22T05:56:36.3095151+00:00",
            sender: 222,
            receiver: 112,
            status: 2,
            errors: vec![("E10".to_owned(), "Ugyldig <id>".to_owned())],
            original_id: "b2d9 & co",
            original_type: "DIALOG_HELSEFAGLIG",
            original_date: "2025-09-22T05:56:36",
        }
        .write();
        assert!(declares_utf8(&apprec));
        let root = parse(&apprec).expect("XML");
        assert_eq!(root.name, "AppRec");
        assert_eq!(
            root.child("Status").and_then(|s| s.attribute("V")),
            Some("2")
        );
        assert_eq!(
            root.child("Error").and_then(|s| s.attribute("DN")),
            Some("Ugyldig <id>")
        );
        assert_eq!(
            root.child("OriginalMsgId")
                .and_then(|o| o.child("Id"))
                .map(Element::text),
            Some("b2d9 & co")
        );
    }

    proptest::proptest! {
        /// Anything, XML-like or not, and any cut of a good document: no panic, and a
        /// reason without a control character.
        #[test]
        fn fuzz_read_msghead(document in proptest::prop_oneof![
            "(<[/?!]?[A-Za-z:]{0,6}( [a-z]{1,3}=['\"][^<]{0,5}['\"])?/?>|&[#a-z0-9]{0,5};?|[^<&]{0,8}|<!\\[CDATA\\[|]]>|<!--|-->){0,40}",
            ".*",
        ], cut in 0usize..2000) {
            for candidate in [document.as_str(), DOCUMENT.get(..cut.min(DOCUMENT.len())).unwrap_or_default()] {
                if let Err(reason) = read_msghead(candidate) {
                    proptest::prop_assert!(!reason.chars().any(char::is_control), "{:?}", reason);
                }
                let _ = declares_utf8(candidate);
            }
        }
    }
}
