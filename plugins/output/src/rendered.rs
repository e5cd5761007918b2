//! The one [`Output`] of the outputs that turn each record into bytes for a
//! writer thread (LOGEMU, SYSLOG, OPRINT, GPRINT, XML, NACCT, PCAP, GRAPHITE,
//! JSON, the SQL rows): the plugin says how a record renders, this hands the
//! bytes to its [`Producer`]. A helper, not a plugin.

use rulogd_delivery::Producer;
use rulogd_plugin::{Binding, BuildError, Output, OutputError, Record};

/// How one output renders a record.
pub(crate) trait Render: Send + 'static {
    /// Stores the slots it reads.
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError>;
    /// Appends the record's bytes to `out`; false when the record gives
    /// none (nothing appended is kept then).
    fn render(&mut self, rec: &Record, out: &mut Vec<u8>) -> bool;
}

/// A [`Render`] and the producer its bytes go to.
pub(crate) struct Rendered<R> {
    producer: Producer,
    render: R,
}

impl<R: Render> Rendered<R> {
    /// The output an instance's build returns.
    pub(crate) fn boxed(producer: Producer, render: R) -> Box<dyn Output> {
        Box::new(Rendered { producer, render })
    }
}

impl<R: Render> Output for Rendered<R> {
    fn bind(&mut self, b: &Binding) -> Result<(), BuildError> {
        self.render.bind(b)
    }

    #[inline]
    fn write(&mut self, rec: &Record) -> Result<(), OutputError> {
        if self.render.render(rec, self.producer.batch().buf()) {
            self.producer.commit()
        } else {
            self.producer.batch().rollback();
            Ok(())
        }
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        self.producer.flush()
    }
}
