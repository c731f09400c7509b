//! Parameter rules Nacos applies to config identifiers and content (wire reference §1.3,
//! §2.4 "400"), with Nacos's messages. Used by the HTTP and gRPC adapters.

use super::CONTENT_BYTES_MAX;
use crate::error::Reject;

/// Longest tenant (namespace id) accepted.
pub const TENANT_CHARS_MAX: usize = 128;
/// Longest tag accepted.
pub const TAG_CHARS_MAX: usize = 16;

fn valid_chars(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// dataId: required, letters, digits and `_ - . :`.
pub fn validate_data_id(data_id: &str) -> Result<(), Reject> {
    if valid_chars(data_id) {
        Ok(())
    } else {
        Err(Reject::InvalidParam(format!("invalid dataId : {data_id}")))
    }
}

/// group: required, same characters as dataId.
pub fn validate_group(group: &str) -> Result<(), Reject> {
    if valid_chars(group) {
        Ok(())
    } else {
        Err(Reject::InvalidParam(format!("invalid group : {group}")))
    }
}

/// tenant: optional, at most 128 valid characters.
pub fn validate_tenant(tenant: &str) -> Result<(), Reject> {
    if tenant.is_empty() {
        return Ok(());
    }
    if tenant.chars().count() > TENANT_CHARS_MAX {
        return Err(Reject::InvalidParam(format!(
            "too long tenant, over {TENANT_CHARS_MAX}"
        )));
    }
    if !valid_chars(tenant) {
        return Err(Reject::InvalidParam("invalid tenant".into()));
    }
    Ok(())
}

/// tag: optional, at most 16 valid characters.
pub fn validate_tag(tag: &str) -> Result<(), Reject> {
    if tag.is_empty() {
        return Ok(());
    }
    if tag.chars().count() > TAG_CHARS_MAX {
        return Err(Reject::InvalidParam(format!(
            "too long tag, over {TAG_CHARS_MAX}"
        )));
    }
    if !valid_chars(tag) {
        return Err(Reject::InvalidParam(format!("invalid tag : {tag}")));
    }
    Ok(())
}

/// content: non-blank, at most `CONTENT_BYTES_MAX`.
pub fn validate_content(content: &str) -> Result<(), Reject> {
    if content.trim().is_empty() {
        return Err(Reject::InvalidParam("content is blank".into()));
    }
    if content.len() > CONTENT_BYTES_MAX {
        return Err(Reject::InvalidParam(format!(
            "content over {CONTENT_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

/// Nacos 2.x maps a blank tenant, `public` (any case) and `null` to the default namespace `""`.
pub fn normalize_tenant(tenant: &str) -> String {
    let t = tenant.trim();
    if t.is_empty() || t.eq_ignore_ascii_case("public") || t == "null" {
        String::new()
    } else {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_nacos() {
        assert!(validate_data_id("app.yaml").is_ok());
        assert!(validate_data_id("配置-1:x").is_ok());
        assert_eq!(
            validate_data_id("a b"),
            Err(Reject::InvalidParam("invalid dataId : a b".into()))
        );
        assert_eq!(
            validate_group(""),
            Err(Reject::InvalidParam("invalid group : ".into()))
        );
        assert_eq!(
            validate_tenant(&"t".repeat(129)),
            Err(Reject::InvalidParam("too long tenant, over 128".into()))
        );
        assert_eq!(
            validate_tenant("a/b"),
            Err(Reject::InvalidParam("invalid tenant".into()))
        );
        assert_eq!(
            validate_tag(&"x".repeat(17)),
            Err(Reject::InvalidParam("too long tag, over 16".into()))
        );
        assert!(validate_content("  ").is_err());
    }

    #[test]
    fn tenant_normalization() {
        assert_eq!(normalize_tenant("PUBLIC"), "");
        assert_eq!(normalize_tenant("null"), "");
        assert_eq!(normalize_tenant(" dev "), "dev");
    }
}
