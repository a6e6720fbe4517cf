//! The files of a SQLite store and the data directory: created private
//! (0700 directories, 0600 files) before the database or keys touch them.

use std::path::Path;

/// Creates keymint's data directory and its `keys` directory, readable by
/// the user keymint runs as only (0700, whatever the umask): the database
/// holds buyers' emails and tokens, `keys/` the signing keys. A data
/// directory that already exists keeps its mode (an operator chose it),
/// with a warning when others can read it; `keys/` is keymint's own and
/// is always made 0700 (docs/operations.md, "Files and permissions").
pub fn prepare_data_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir)?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    data_dir = %dir.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "the data directory is open to other users; `chmod 700` it"
                );
            }
        }
    } else {
        create_private_dir(dir)?;
    }
    let keys = dir.join("keys");
    if !keys.is_dir() {
        std::fs::create_dir(&keys)?;
    }
    set_mode(&keys, 0o700)
}

/// Creates `dir` and any missing parent, each 0700 whatever the umask.
pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at
        && !d.as_os_str().is_empty()
        && !d.exists()
    {
        missing.push(d);
        at = d.parent();
    }
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => set_mode(d, 0o700)?,
            // Another process (a replica, the CLI) made it meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }
    #[cfg(not(unix))]
    {
        // No permission bits to set off Unix; the arguments are unused.
        let _ = (path, mode);
        Ok(())
    }
}

/// Options that create files readable by the owner only (mode 0600 on
/// Unix); callers add how they open (create, truncate, create_new).
pub fn private_file_options() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Makes the SQLite database file (and its `-wal` and `-shm` files, which
/// SQLite creates with the database file's mode) readable by the owner
/// only: created 0600 if missing, tightened if an older version left it
/// open to others.
pub(super) fn private_sqlite_files(path: &Path) -> std::io::Result<()> {
    drop(
        private_file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?,
    );
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let file = std::path::PathBuf::from(name);
        if file.exists() {
            set_mode(&file, 0o600)?;
        }
    }
    Ok(())
}
