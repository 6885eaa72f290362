//! Personal data is sealed with a key per member, held outside the log. Erasure destroys
//! the key: the sealed bytes in `MemberRegistered` stay (events are immutable, hashes stay
//! valid) but can no longer be opened.
//!
//! ChaCha20-Poly1305 (RFC 8439): an AEAD in pure Rust; the member id is the associated
//! data, so sealed data copied onto another member does not open.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{AeadCore, ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::events::SealedPersonalData;
use super::ids::MemberId;

/// A member's 256-bit key.
#[derive(Clone)]
pub struct MemberKey([u8; 32]);

impl std::fmt::Debug for MemberKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemberKey(…)")
    }
}

/// What the ledger knows of a person, only ever stored sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalData {
    pub legal_name: String,
    pub email: String,
    pub payout_address: String,
}

#[derive(Debug, Error)]
pub enum PrivacyError {
    #[error("key vault I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the key of member {0} is damaged")]
    DamagedKey(MemberId),
    #[error("the personal data of member {0} is erased")]
    Erased(MemberId),
    #[error("the personal data of member {0} does not open with its key")]
    DoesNotOpen(MemberId),
}

/// Where members' keys live. Outside the log, so that destroying one forgets a person
/// without touching history.
pub trait KeyVault: Send + Sync + 'static {
    /// The member's key, created if it has none. Creating is durable before it returns.
    fn key_for(&self, member: &MemberId) -> Result<MemberKey, PrivacyError>;
    /// The member's key, or `None` once destroyed (or never created).
    fn get(&self, member: &MemberId) -> Result<Option<MemberKey>, PrivacyError>;
    /// Destroys the key, durably. Destroying a missing key is not an error.
    fn destroy(&self, member: &MemberId) -> Result<(), PrivacyError>;
}

/// A directory with one file per member (`<member id>.key`, 32 bytes). A key is written
/// to a temporary file, fsync'd, renamed into place and the directory fsync'd, so a crash
/// leaves either no key or a whole one.
///
/// Deleting a file does not scrub the disk blocks it used; for stronger erasure, put the
/// directory on an encrypted volume or a hardware key store behind this same trait.
#[derive(Debug)]
pub struct FileKeyVault {
    directory: PathBuf,
}

impl FileKeyVault {
    pub fn open(directory: impl Into<PathBuf>) -> Result<FileKeyVault, PrivacyError> {
        let directory = directory.into();
        fs::create_dir_all(&directory).map_err(|source| PrivacyError::Io {
            path: directory.clone(),
            source,
        })?;
        Ok(FileKeyVault { directory })
    }

    fn path(&self, member: &MemberId) -> PathBuf {
        // Member ids are [A-Za-z0-9_-]: safe as file names.
        self.directory.join(format!("{member}.key"))
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PrivacyError + '_ {
        move |source| PrivacyError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn sync_directory(&self) -> Result<(), PrivacyError> {
        fs::File::open(&self.directory)
            .and_then(|directory| directory.sync_all())
            .map_err(Self::io(&self.directory))
    }
}

impl KeyVault for FileKeyVault {
    fn key_for(&self, member: &MemberId) -> Result<MemberKey, PrivacyError> {
        if let Some(key) = self.get(member)? {
            return Ok(key);
        }
        let key: [u8; 32] = ChaCha20Poly1305::generate_key(&mut OsRng).into();
        let path = self.path(member);
        let temporary = self.directory.join(format!("{member}.key.tmp"));
        let mut file = fs::File::create(&temporary).map_err(Self::io(&temporary))?;
        file.write_all(&key)
            .and_then(|()| file.sync_all())
            .map_err(Self::io(&temporary))?;
        fs::rename(&temporary, &path).map_err(Self::io(&path))?;
        self.sync_directory()?;
        Ok(MemberKey(key))
    }

    fn get(&self, member: &MemberId) -> Result<Option<MemberKey>, PrivacyError> {
        let path = self.path(member);
        match fs::read(&path) {
            Ok(bytes) => {
                let key: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| PrivacyError::DamagedKey(member.clone()))?;
                Ok(Some(MemberKey(key)))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(Self::io(&path)(error)),
        }
    }

    fn destroy(&self, member: &MemberId) -> Result<(), PrivacyError> {
        let path = self.path(member);
        match fs::remove_file(&path) {
            Ok(()) => self.sync_directory(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(Self::io(&path)(error)),
        }
    }
}

/// Seals `data` with the member's key (created if needed).
pub fn seal(
    vault: &dyn KeyVault,
    member: &MemberId,
    data: &PersonalData,
) -> Result<SealedPersonalData, PrivacyError> {
    let key = vault.key_for(member)?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
    let nonce = ChaCha20Poly1305::generate_nonce(&mut OsRng);
    let plaintext = super::events::encode_payload(data);
    let ciphertext = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: &plaintext,
                aad: member.as_str().as_bytes(),
            },
        )
        .expect("encryption into a Vec does not fail");
    Ok(SealedPersonalData {
        nonce: nonce.into(),
        ciphertext,
    })
}

/// Opens sealed personal data, or says it is erased.
pub fn open(
    vault: &dyn KeyVault,
    member: &MemberId,
    sealed: &SealedPersonalData,
) -> Result<PersonalData, PrivacyError> {
    let key = vault
        .get(member)?
        .ok_or_else(|| PrivacyError::Erased(member.clone()))?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(&key.0));
    let plaintext = cipher
        .decrypt(
            Nonce::from_slice(&sealed.nonce),
            Payload {
                msg: &sealed.ciphertext,
                aad: member.as_str().as_bytes(),
            },
        )
        .map_err(|_| PrivacyError::DoesNotOpen(member.clone()))?;
    super::events::decode_payload("PersonalData", &plaintext)
        .map_err(|_| PrivacyError::DoesNotOpen(member.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> PersonalData {
        PersonalData {
            legal_name: "Ada Example".into(),
            email: "ada@example.org".into(),
            payout_address: "IBAN XX00 0000".into(),
        }
    }

    #[test]
    fn sealed_data_opens_until_the_key_is_destroyed() {
        let directory = tempfile::tempdir().unwrap();
        let vault = FileKeyVault::open(directory.path()).unwrap();
        let ada = MemberId::new("ada").unwrap();
        let sealed = seal(&vault, &ada, &data()).unwrap();
        let plain = super::super::events::encode_payload(&data());
        assert!(!sealed
            .ciphertext
            .windows(plain.len())
            .any(|window| window == plain.as_slice()));
        assert_eq!(open(&vault, &ada, &sealed).unwrap(), data());
        // A reopened vault finds the same key.
        let reopened = FileKeyVault::open(directory.path()).unwrap();
        assert_eq!(open(&reopened, &ada, &sealed).unwrap(), data());
        // Sealed data does not open as another member's.
        let bob = MemberId::new("bob").unwrap();
        reopened.key_for(&bob).unwrap();
        assert!(matches!(
            open(&reopened, &bob, &sealed),
            Err(PrivacyError::DoesNotOpen(_))
        ));
        vault.destroy(&ada).unwrap();
        vault.destroy(&ada).unwrap();
        assert!(matches!(
            open(&vault, &ada, &sealed),
            Err(PrivacyError::Erased(_))
        ));
        assert!(!directory.path().join("ada.key").exists());
    }
}
