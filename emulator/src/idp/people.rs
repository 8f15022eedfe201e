//! The test people a tester picks on the emulator's login page: synthetic national
//! identity numbers (valid check digits), HPR numbers and names, all at security level 4,
//! as a login through ID-porten would give them.

use serde_json::{Map, Value, json};

use crate::server::error::b64;
use crate::server::unix_now;

/// A test person of the emulator's login page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TestPerson {
    /// The national identity number (fødselsnummer), eleven digits with valid check
    /// digits; synthetic.
    pub pid: &'static str,
    /// The person's number in the Health Personnel Register (HPR).
    pub hpr_number: &'static str,
    /// The given name.
    pub given_name: &'static str,
    /// The family name.
    pub family_name: &'static str,
}

impl TestPerson {
    /// The full name: given name, then family name.
    pub fn name(&self) -> String {
        format!("{} {}", self.given_name, self.family_name)
    }

    /// The security level of the person's login: always `"4"` (high), as a login with
    /// BankID through ID-porten gives.
    pub fn security_level(&self) -> &'static str {
        SECURITY_LEVEL
    }

    /// The person's claims in ID tokens and access tokens: the user claims of test
    /// tokens (`sub`, `amr`, `auth_time`, `idp`, pid, security and assurance level),
    /// with the names and the HPR number.
    pub(crate) fn claims(&self) -> Map<String, Value> {
        let mut claims = user_claims(self.pid, SECURITY_LEVEL, "high");
        claims.insert("name".into(), json!(self.name()));
        claims.insert("given_name".into(), json!(self.given_name));
        claims.insert("family_name".into(), json!(self.family_name));
        claims.insert(HPR_NUMBER_CLAIM.into(), json!(self.hpr_number));
        claims
    }
}

/// The claim that carries a person's HPR number.
pub const HPR_NUMBER_CLAIM: &str = "helseid://claims/hpr/hpr_number";

/// Every test person's security level.
const SECURITY_LEVEL: &str = "4";

/// The test people, in the order the login page lists them.
pub const TEST_PEOPLE: [TestPerson; 4] = [
    TestPerson {
        pid: "13116900216",
        hpr_number: "565501872",
        given_name: "Kari",
        family_name: "Dahl",
    },
    TestPerson {
        pid: "01019010046",
        hpr_number: "431001110",
        given_name: "Ola",
        family_name: "Berg",
    },
    TestPerson {
        pid: "15038510190",
        hpr_number: "565989321",
        given_name: "Ingrid",
        family_name: "Lie",
    },
    TestPerson {
        pid: "24077210020",
        hpr_number: "100203040",
        given_name: "Jonas",
        family_name: "Haugen",
    },
];

/// The test person with this pid.
pub(crate) fn find(pid: &str) -> Option<&'static TestPerson> {
    TEST_PEOPLE.iter().find(|person| person.pid == pid)
}

/// A user's claims as HelseID puts them in tokens: `sub` (a stable pseudonym of the
/// pid), `amr`, `auth_time` (now), `idp`, the pid, the security level and the
/// assurance level.
pub(crate) fn user_claims(pid: &str, level: &str, assurance: &str) -> Map<String, Value> {
    let mut user = Map::new();
    user.insert("sub".into(), json!(pseudonym(pid)));
    user.insert("amr".into(), json!(["pwd"]));
    user.insert("auth_time".into(), json!(unix_now()));
    user.insert("idp".into(), json!(TEST_IDP));
    user.insert("helseid://claims/identity/pid".into(), json!(pid));
    user.insert(
        "helseid://claims/identity/security_level".into(),
        json!(level),
    );
    user.insert(
        "helseid://claims/identity/assurance_level".into(),
        json!(assurance),
    );
    user
}

/// Whether `pid` is a Norwegian fødselsnummer or D-number: eleven digits whose last two
/// are the mod-11 check digits.
pub(crate) fn is_pid(pid: &str) -> bool {
    let digits: Vec<u32> = pid.chars().filter_map(|c| c.to_digit(10)).collect();
    if pid.len() != 11 || digits.len() != 11 {
        return false;
    }
    let check = |weights: &[u32]| -> Option<u32> {
        let sum: u32 = weights.iter().zip(&digits).map(|(w, d)| w * d).sum();
        match 11 - sum % 11 {
            11 => Some(0),
            10 => None,
            k => Some(k),
        }
    };
    check(&[3, 7, 6, 1, 8, 9, 4, 5, 2]) == digits.get(9).copied()
        && check(&[5, 4, 3, 2, 7, 6, 5, 4, 3, 2]) == digits.get(10).copied()
}

/// A stable pseudonym for a person: the same `sub` for the same pid, on every run.
fn pseudonym(pid: &str) -> String {
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("helseid-emulator-sub:{pid}").as_bytes(),
    );
    b64(digest.as_ref())
}

/// The identity provider named in the `idp` claim of test tokens.
const TEST_IDP: &str = "testidp-oidc";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_person_has_a_valid_pid_and_distinct_numbers() {
        for (i, person) in TEST_PEOPLE.iter().enumerate() {
            assert!(crate::idp::people::is_pid(person.pid), "{}", person.pid);
            assert!(person.hpr_number.bytes().all(|b| b.is_ascii_digit()));
            for other in &TEST_PEOPLE[i + 1..] {
                assert_ne!(person.pid, other.pid);
                assert_ne!(person.hpr_number, other.hpr_number);
            }
            let claims = person.claims();
            assert_eq!(claims["helseid://claims/identity/pid"], person.pid);
            assert_eq!(claims[HPR_NUMBER_CLAIM], person.hpr_number);
            assert_eq!(claims["helseid://claims/identity/security_level"], "4");
        }
    }
}
