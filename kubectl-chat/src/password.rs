//! Where a password comes from: `CHAT_PASSWORD`, `--password-stdin`, or a
//! no-echo prompt — never a positional argument (it would land in shell history).

use std::io::BufRead;

use anyhow::{Context, bail};

pub fn read(from_stdin: bool, prompt: &str) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("CHAT_PASSWORD")
        && !p.is_empty()
    {
        return Ok(p);
    }
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        rpassword::prompt_password(prompt)
            .context("reading the password (no terminal? use --password-stdin or CHAT_PASSWORD)")?
    };
    if password.is_empty() {
        bail!("empty password");
    }
    Ok(password)
}
