//! The test people a tester picks on the emulator's login page: synthetic national
//! identity numbers (valid check digits), HPR numbers and names, all at security level 4,
//! as a login through ID-porten would give them.

use serde_json::{Map, Value, json};

use crate::idp::test_token::user_claims;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_person_has_a_valid_pid_and_distinct_numbers() {
        for (i, person) in TEST_PEOPLE.iter().enumerate() {
            assert!(crate::idp::test_token::is_pid(person.pid), "{}", person.pid);
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
