//! The admin kubeconfig `keel server` writes, so `KUBECONFIG=./keel-data/kubeconfig.yaml kubectl`
//! works at once. Plain HTTP and no credentials until the security issue brings TLS and
//! authentication.

use std::net::SocketAddr;
use std::path::Path;

pub fn render(address: SocketAddr) -> String {
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: keel\n  \
           cluster:\n    \
             server: http://{address}\n\
         contexts:\n\
         - name: keel\n  \
           context:\n    \
             cluster: keel\n    \
             user: admin\n\
         current-context: keel\n\
         users:\n\
         - name: admin\n  \
           user: {{}}\n\
         preferences: {{}}\n"
    )
}

pub fn write(path: &Path, address: SocketAddr) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    // Written whole under a temporary name, then renamed: a reader never sees half a file.
    let temporary = path.with_extension("yaml.tmp");
    std::fs::write(&temporary, render(address))?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_server() {
        let text = render("127.0.0.1:6443".parse().unwrap());
        assert!(text.contains("    server: http://127.0.0.1:6443\n"));
        assert!(text.contains("current-context: keel\n"));
        assert!(text.contains("  user: {}\n"));
    }
}
