//! `helseid msh` (send, inbox, get, ack, status) as the built binary runs them: against
//! an emulator on 127.0.0.1 with a configuration file, and without `--config` the
//! two-terminal recipe (`inbox --follow` keeps its embedded emulator and prints how to
//! send to it; a second process sends; the first prints the message). Bad input gets
//! one clear line; text from outside is escaped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};

use helseid_emulator::{Emulator, MSH_SCOPE};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_helseid");
const CLIENT: &str = "msh-cli";

/// A child process killed when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let mut random = [0u8; 8];
        aws_lc_rs::rand::fill(&mut random).expect("random");
        let dir = std::env::temp_dir().join(format!(
            "helseid-{name}-{:016x}",
            u64::from_le_bytes(random)
        ));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).display().to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An emulator, a configuration file for a client of its Meldingstjener, and two
/// tenants with a HER-id each: (orgnr, HER-id).
struct Setup {
    emulator: Emulator,
    dir: TempDir,
    config: String,
    sender: (String, i32),
    receiver: (String, i32),
}

async fn setup() -> Setup {
    let emulator = Emulator::builder()
        .test_client(CLIENT, [MSH_SCOPE])
        .start()
        .await
        .expect("emulator");
    let dir = TempDir::new("cli-msh");
    let config = dir.path("client.json");
    emulator
        .write_client_config(CLIENT, &config)
        .expect("the configuration");
    let mut tenants = emulator
        .msh_organisations()
        .into_iter()
        .filter_map(|orgnr| {
            let her_id = *emulator.msh_her_ids(&orgnr).first()?;
            Some((orgnr, her_id))
        });
    let sender = tenants.next().expect("a tenant");
    let receiver = tenants.next().expect("another tenant");
    Setup {
        emulator,
        dir,
        config,
        sender,
        receiver,
    }
}

/// A MsgHead from `sender` to `receiver` whose content is `note`.
fn msghead(sender: i32, receiver: i32, note: &str) -> String {
    let party = |her_id: i32| {
        format!(
            "<Organisation><OrganisationName>HER {her_id}</OrganisationName>\
             <Ident><Id>{her_id}</Id><TypeId V=\"HER\"/></Ident></Organisation>"
        )
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<MsgHead><MsgInfo>\
         <Type V=\"DIALOG_HELSEFAGLIG\"/><GenDate>2025-06-01T10:00:00</GenDate>\
         <MsgId>m-{note}</MsgId><Sender>{}</Sender><Receiver>{}</Receiver></MsgInfo>\n\
         <Document><Content>{note}</Content></Document></MsgHead>\n",
        party(sender),
        party(receiver)
    )
}

/// Runs `helseid ARGS` off the runtime's threads (the emulator serves on them).
async fn helseid(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(args)
            .output()
            .expect("the helseid binary runs")
    })
    .await
    .expect("join")
}

impl Setup {
    /// `helseid msh ARGS --config FILE --tenant ORGNR`.
    async fn run(&self, orgnr: &str, args: &[&str]) -> Output {
        let mut all: Vec<String> = ["msh"]
            .iter()
            .chain(args)
            .map(|a| (*a).to_owned())
            .collect();
        all.extend([
            "--config".to_owned(),
            self.config.clone(),
            "--tenant".to_owned(),
            orgnr.to_owned(),
        ]);
        helseid(all).await
    }

    /// As [`run`](Self::run), which must succeed: its stdout.
    async fn ok(&self, orgnr: &str, args: &[&str]) -> String {
        let output = self.run(orgnr, args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        String::from_utf8(output.stdout).expect("UTF-8")
    }

    /// As [`run`](Self::run), which must fail: its one line of stderr.
    async fn fails(&self, orgnr: &str, args: &[&str]) -> String {
        let output = self.run(orgnr, args).await;
        assert!(!output.status.success(), "{args:?} should fail");
        assert!(output.stdout.is_empty(), "{args:?}");
        one_line(&output)
    }

    /// Writes a business document; its path.
    fn document(&self, name: &str, text: &str) -> String {
        let path = self.dir.path(name);
        std::fs::write(&path, text).expect("a document");
        path
    }
}

/// The one line a failed command writes: `error: ...`.
fn one_line(output: &Output) -> String {
    let stderr = String::from_utf8(output.stderr.clone()).expect("UTF-8");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(!stderr.contains("eyJ"), "a token in {stderr}");
    assert!(!stderr.contains('\u{1b}'), "an escape sequence in {stderr}");
    lines[0].to_owned()
}

#[tokio::test]
async fn send_inbox_get_ack_and_status() {
    let s = setup().await;
    let ((a, sender), (b, receiver)) = (s.sender.clone(), s.receiver.clone());
    let (from, to) = (sender.to_string(), receiver.to_string());
    let text = msghead(sender, receiver, "first");
    let file = s.document("first.xml", &text);

    let id = s
        .ok(&a, &["send", "--from", &from, "--to", &to, &file])
        .await
        .trim()
        .to_owned();
    assert_eq!(id.len(), 36, "a GUID: {id}");

    // The receiver's inbox lists it once, in both forms.
    let listed = s.ok(&b, &["inbox", "--her-id", &to]).await;
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.starts_with(&id), "{listed}");
    assert!(listed.contains(&format!("from {sender}")), "{listed}");
    let json = s.ok(&b, &["inbox", "--her-id", &to, "--json"]).await;
    let message: Value = serde_json::from_str(json.trim()).expect("one JSON object");
    assert_eq!(message["id"], id.as_str());
    assert_eq!(message["senderHerId"], sender);

    // Fetched to a file: the document as sent; the status moves.
    let out = s.dir.path("got.xml");
    s.ok(&b, &["get", &id, "--out", &out]).await;
    assert_eq!(std::fs::read_to_string(&out).expect("written"), text);
    let status = s.ok(&a, &["status", &id]).await;
    assert_eq!(status.trim(), format!("{receiver}  Acknowledged  apprec -"));

    // Acknowledged: the receipt is sent, the message leaves the inbox, and the receipt
    // reaches the sender, who acknowledges it in turn (marked read, no receipt).
    let acked = s.ok(&b, &["ack", &id]).await;
    assert!(acked.contains("(Ok) sent, marked read"), "{acked}");
    assert!(s.ok(&b, &["inbox", "--her-id", &to]).await.is_empty());
    let status = s.ok(&a, &["status", &id]).await;
    assert_eq!(
        status.trim(),
        format!("{receiver}  Acknowledged  apprec Ok")
    );
    let receipts = s.ok(&a, &["inbox", "--her-id", &from]).await;
    assert!(receipts.contains("(application receipt)"), "{receipts}");
    let receipt = receipts
        .split_whitespace()
        .next()
        .expect("an id")
        .to_owned();
    let acked = s.ok(&a, &["ack", &receipt]).await;
    assert!(
        acked.contains("an application receipt, marked read"),
        "{acked}"
    );
    assert!(s.ok(&a, &["inbox", "--her-id", &from]).await.is_empty());

    // A second message, rejected with an error the sender sees in the status.
    let file = s.document("second.xml", &msghead(sender, receiver, "second"));
    let second = s
        .ok(&a, &["send", "--from", &from, "--to", &to, &file])
        .await
        .trim()
        .to_owned();
    s.ok(&b, &["ack", &second, "--reject", "E10:Ukjent pasient"])
        .await;
    let status = s.ok(&a, &["status", &second, "--json"]).await;
    let status: Value = serde_json::from_str(status.trim()).expect("JSON");
    assert_eq!(status["appRecStatus"], "Rejected");
    assert_eq!(status["appRecErrorList"][0]["errorCode"], "E10");
    assert!(s.emulator.msh_requests() > 0);
}

#[tokio::test]
async fn bad_input_gets_one_clear_line() {
    let s = setup().await;
    let ((a, sender), (b, receiver)) = (s.sender.clone(), s.receiver.clone());
    let (from, to) = (sender.to_string(), receiver.to_string());
    let file = s.document("m.xml", &msghead(sender, receiver, "m"));

    let line = s
        .fails(&a, &["send", "--from", "abc", "--to", &to, &file])
        .await;
    assert!(line.contains("--from `abc` is not a HER-id"), "{line}");
    let line = s
        .fails(&a, &["send", "--from", &from, "--to", &to, "/no/such/file"])
        .await;
    assert!(line.contains("cannot read /no/such/file"), "{line}");
    let line = s.fails(&b, &["get", "not-a-guid\u{1b}[31m"]).await;
    assert!(line.contains("is not a message id"), "{line}");
    assert!(line.contains("\\u{1b}"), "escaped: {line}");
    let line = s
        .fails(
            &b,
            &[
                "ack",
                "3d924740-9f7b-4c33-93af-ff72e118d1e6",
                "--reject",
                ":x",
            ],
        )
        .await;
    assert!(line.contains("names no error code"), "{line}");

    // The API's answers: an unknown receiver (its validationErrors), a HER-id of another
    // tenant (403), an unknown message (404).
    let stranger = msghead(sender, 99_999_999, "s");
    let stranger = s.document("s.xml", &stranger);
    let line = s
        .fails(
            &a,
            &["send", "--from", &from, "--to", "99999999", &stranger],
        )
        .await;
    assert!(line.contains("400 Bad Request"), "{line}");
    assert!(line.contains("99999999"), "{line}");
    let line = s
        .fails(&b, &["send", "--from", &from, "--to", &to, &file])
        .await;
    assert!(line.contains("403 Forbidden"), "{line}");
    let line = s
        .fails(&a, &["status", "3d924740-9f7b-4c33-93af-ff72e118d1e6"])
        .await;
    assert!(line.contains("404 Not Found"), "{line}");
    // Not the MsgHead's sender: refused before sending.
    let line = s
        .fails(&a, &["send", "--from", &to, "--to", &to, &file])
        .await;
    assert!(
        line.contains(&format!("Sender is not HER-id {receiver}")),
        "{line}"
    );
}

#[tokio::test]
async fn text_from_outside_is_escaped() {
    let s = setup().await;
    let ((a, sender), (b, receiver)) = (s.sender.clone(), s.receiver.clone());
    let file = s.document("esc.xml", &msghead(sender, receiver, "red\u{1b}[31m"));
    let id = s
        .ok(
            &a,
            &[
                "send",
                "--from",
                &sender.to_string(),
                "--to",
                &receiver.to_string(),
                &file,
            ],
        )
        .await
        .trim()
        .to_owned();
    let printed = s.ok(&b, &["get", &id]).await;
    assert!(!printed.contains('\u{1b}'), "{printed}");
    assert!(printed.contains("red\\u{1b}[31m"), "{printed}");
    assert!(printed.starts_with("<?xml"), "{printed}");
}

#[test]
fn two_terminals_share_the_embedded_emulator() {
    // The register is the same in every emulator: a HER-id to watch.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let her_id = runtime.block_on(async {
        let emulator = Emulator::builder().start().await.expect("emulator");
        let orgnr = emulator.msh_organisations()[1].clone();
        emulator.msh_her_ids(&orgnr)[0]
    });

    // The first terminal: the inbox, following, without --config.
    let mut child = Command::new(BIN)
        .args(["msh", "inbox", "--her-id", &her_id.to_string(), "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("helseid msh inbox starts");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let inbox = Running(child);
    let mut command = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.expect("a line of stderr");
        if let Some(rest) = line.trim().strip_prefix("helseid msh send ") {
            command = Some(rest.to_owned());
            break;
        }
    }
    let command = command.expect("the command for the second terminal");

    // The second terminal: the printed command, as it is.
    let mut args = vec!["msh".to_owned(), "send".to_owned()];
    args.extend(command.split_whitespace().map(str::to_owned));
    let sent = Command::new(BIN)
        .args(&args)
        .output()
        .expect("helseid msh send");
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let id = String::from_utf8(sent.stdout)
        .expect("UTF-8")
        .trim()
        .to_owned();

    // The first terminal prints it.
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .expect("a line")
        .expect("UTF-8");
    assert!(line.starts_with(&id), "{line}");
    assert!(line.contains(&format!("to {her_id}")), "{line}");
    drop(inbox);
    // Killed, the inbox cannot remove its directory (Ctrl-C would): the test does.
    let config = command
        .split_whitespace()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .expect("--config FILE");
    let dir = std::path::Path::new(config)
        .parent()
        .expect("its directory");
    assert!(dir.join("message.xml").is_file());
    std::fs::remove_dir_all(dir).expect("removed");
}
