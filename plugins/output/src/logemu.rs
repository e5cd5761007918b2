//! LOGEMU: the `print` line of PRINTPKT or PRINTFLOW in a file, with a
//! syslog-like `Mmm dd hh:mm:ss host ` prefix, as ulogd's
//! `ulogd_output_LOGEMU` writes it.
//!
//! The time is the local time of `oob.time.sec` when valid (the packet's
//! time), else the current time; the host is the short host name (up to the
//! first `.`), read once at start. `print` already ends with a newline.

use crate::rendered::{Render, Rendered};
use crate::text::{cstr, file_producer, now, SyslogClock};
use rulogd_plugin::{
    Binding, BuildCtx, BuildError, KeyDef, KeyType, OptionDef, Output, Record, Slot,
};

static OPTIONS: [OptionDef; 2] = [
    OptionDef::str("file", "/var/log/ulogd_syslogemu.log", "Output file"),
    OptionDef::int(
        "sync",
        "0",
        "Hand every line to the writer at once instead of in 64 KiB batches",
    )
    .flag(),
];

static INPUT: [KeyDef; 2] = [
    KeyDef::new("print", KeyType::String),
    KeyDef::new("oob.time.sec", KeyType::U32).optional(),
];

rulogd_plugin::plugin! {
    Output "LOGEMU" (build): "Writes the print key of PRINTPKT/PRINTFLOW to a file, syslog style";
    options &OPTIONS;
    input &INPUT;
}

/// One LOGEMU instance in one stack.
pub struct Logemu {
    /// `" <short host name> "`.
    host: Box<[u8]>,
    clock: SyslogClock,
    print: Option<Slot>,
    sec: Option<Slot>,
}

fn build(ctx: &BuildCtx) -> Result<Box<dyn Output>, BuildError> {
    let host = short_hostname().map_err(|e| BuildError::io("LOGEMU: gethostname", e))?;
    let mut h = Vec::with_capacity(host.len() + 2);
    h.push(b' ');
    h.extend_from_slice(&host);
    h.push(b' ');
    Ok(Rendered::boxed(
        file_producer(ctx, "LOGEMU")?,
        Logemu {
            host: h.into_boxed_slice(),
            clock: SyslogClock::default(),
            print: None,
            sec: None,
        },
    ))
}

/// The host name up to its first dot.
pub(crate) fn short_hostname() -> std::io::Result<Vec<u8>> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its length; the result is cut at NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let name = cstr(&buf);
    let short = name.split(|&c| c == b'.').next().unwrap_or(name);
    Ok(short.to_vec())
}

impl Render for Logemu {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.print = b.input("print");
        self.sec = b.input("oob.time.sec");
        Ok(())
    }

    fn render(&mut self, rec: &Record, out: &mut Vec<u8>) -> bool {
        let Some(print) = rec.get_bytes(self.print) else {
            return false;
        };
        let secs = match rec.get_u64(self.sec) {
            // ulogd reads the key as a u32 into a time_t.
            Some(s) => i64::from(s as u32),
            None => now().0,
        };
        let stamp = self.clock.get(secs);
        out.extend_from_slice(&stamp);
        out.extend_from_slice(&self.host);
        out.extend_from_slice(cstr(print));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{temp_dir, text, Harness};
    use crate::text::{local_tm, syslog_time};
    use rulogd_plugin::Value;

    #[test]
    fn lines_carry_packet_time_host_and_print() {
        let dir = temp_dir("logemu");
        let file = dir.join("emu.log");
        let f = file.to_str().unwrap();
        let mut h = Harness::new(
            REGISTRATION,
            &[("file", f), ("sync", "1")],
            &[("print", KeyType::String), ("oob.time.sec", KeyType::U32)],
        );
        h.set("print", text("PFX IN=lo OUT= MARK=0x0 \n"))
            .set("oob.time.sec", Value::U32(1_795_444_849));
        h.write();
        // No packet time: now. No print: nothing.
        h.set("print", Value::text(b"second\0hidden\n"));
        h.write();
        h.set("oob.time.sec", Value::U32(1));
        h.write();
        h.stop();
        let got = std::fs::read_to_string(&file).unwrap();
        let host = String::from_utf8(short_hostname().unwrap()).unwrap();
        let stamp = String::from_utf8(syslog_time(&local_tm(1_795_444_849)).to_vec()).unwrap();
        let mut lines = got.split_inclusive('\n');
        assert_eq!(
            lines.next().unwrap(),
            format!("{stamp} {host} PFX IN=lo OUT= MARK=0x0 \n")
        );
        // The C string stops at the NUL, taking the newline with it.
        let second = got[got.find('\n').unwrap() + 1..].to_string();
        assert!(second.ends_with(&format!(" {host} second")), "{second:?}");
        assert_eq!(second.len(), 15 + 1 + host.len() + 1 + 6);
        assert!(!host.contains('.'));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_unwritable_file_fails_the_build() {
        let shared = rulogd_plugin::SharedRegistry::default();
        let e = crate::testutil::try_build(
            REGISTRATION,
            &[("file", "/nonexistent-dir/x.log")],
            &shared,
        )
        .err()
        .expect("build fails");
        assert!(e.to_string().contains("/nonexistent-dir/x.log"), "{e}");
    }
}
