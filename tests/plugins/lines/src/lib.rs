//! LINES: `<oob.prefix> <udp.dport>` per record into `file`, the SDK's
//! output side (format on the input thread, write on the writer thread)
//! exercised by tests/plugins.rs.

use rulogd_plugin_sdk::{
    export_output, Config, Format, Key, Opt, Out, Output, Record, Type, Value, Writer,
};
use std::fs::{File, OpenOptions};
use std::io::Write;

struct Lines;

struct FileWriter(File);

impl Output for Lines {
    const NAME: &'static str = "LINES";
    const SUMMARY: &'static str = "Writes `prefix port` lines (a test plugin)";
    const INPUT_KEYS: &'static [Key] = &[
        Key::new("oob.prefix", Type::String).optional(),
        Key::new("udp.dport", Type::U16).optional(),
    ];
    const OPTIONS: &'static [Opt] = &[Opt::str("file", "/dev/null", "the file").mandatory()];
    type Writer = FileWriter;

    fn configure(_: &Config) -> Result<Self, String> {
        Ok(Lines)
    }

    fn open_writer(cfg: &Config) -> Result<FileWriter, String> {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(cfg.str("file"))
            .map(FileWriter)
            .map_err(|e| format!("{}: {e}", cfg.str("file")))
    }

    fn format(&mut self, rec: &Record, out: &mut Out) -> Format {
        let Some(port) = rec.get_u64(1) else {
            return Format::Skipped;
        };
        if let Some(Value::Str(p)) = rec.get(0) {
            out.push(p);
        }
        out.push(format!(" {port}\n").as_bytes());
        Format::Written
    }
}

impl Writer for FileWriter {
    fn write(&mut self, data: &[u8], _records: usize) -> std::io::Result<()> {
        self.0.write_all(data)
    }
}

export_output!(Lines);
