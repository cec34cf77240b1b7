//! The KMS vault against moto: tokens round-trip under their encryption context only.

use oen_pay::aws::KmsVault;
use oen_pay::domain::{BindingRef, CardToken, CustomerId, MerchantId};
use oen_pay::vault::{Ciphertext, TokenVault, VaultContext, VaultError};
use oen_pay_integration::{create_kms_key, kms_client};

const TOKEN: &str = "2HhnhWm8Qe0sPz4LbXv9KdYt1Ra";

fn ctx(customer: &str, binding: &BindingRef) -> VaultContext {
    VaultContext {
        merchant: MerchantId::parse("ming").unwrap(),
        customer: CustomerId::parse(customer).unwrap(),
        binding: binding.clone(),
    }
}

async fn fresh_vault() -> KmsVault {
    let client = kms_client().await;
    let key = create_kms_key(&client).await;
    KmsVault::new(client, key)
}

#[tokio::test]
async fn a_token_round_trips_under_its_context() {
    let vault = fresh_vault().await;
    let token = CardToken::parse(TOKEN).unwrap();
    let context = ctx("c-kms", &BindingRef::generate());
    let sealed = vault.encrypt(&token, &context).await.unwrap();
    assert_eq!(vault.decrypt(&sealed, &context).await.unwrap(), token);
}

#[tokio::test]
async fn the_ciphertext_never_contains_the_token() {
    let vault = fresh_vault().await;
    let token = CardToken::parse(TOKEN).unwrap();
    let sealed = vault
        .encrypt(&token, &ctx("c-kms", &BindingRef::generate()))
        .await
        .unwrap();
    let needle = TOKEN.as_bytes();
    assert!(!sealed.0.windows(needle.len()).any(|w| w == needle));
    // Nor any recognisable piece of it.
    assert!(!sealed.0.windows(8).any(|w| w == &needle[..8]));
}

#[tokio::test]
async fn any_other_context_is_a_context_mismatch() {
    let vault = fresh_vault().await;
    let token = CardToken::parse(TOKEN).unwrap();
    let binding = BindingRef::generate();
    let right = ctx("c-kms", &binding);
    let sealed = vault.encrypt(&token, &right).await.unwrap();

    let other_customer = ctx("c-other", &binding);
    let other_binding = ctx("c-kms", &BindingRef::generate());
    let other_merchant = VaultContext {
        merchant: MerchantId::parse("other-shop").unwrap(),
        ..right.clone()
    };
    for wrong in [other_customer, other_binding, other_merchant] {
        assert_eq!(
            vault.decrypt(&sealed, &wrong).await.unwrap_err(),
            VaultError::ContextMismatch,
            "{wrong:?}"
        );
    }
}

#[tokio::test]
async fn tampered_ciphertext_is_a_context_mismatch() {
    let vault = fresh_vault().await;
    let context = ctx("c-kms", &BindingRef::generate());
    let mut sealed = vault
        .encrypt(&CardToken::parse(TOKEN).unwrap(), &context)
        .await
        .unwrap();
    let last = sealed.0.len() - 1;
    sealed.0[last] ^= 1;
    assert_eq!(
        vault.decrypt(&sealed, &context).await.unwrap_err(),
        VaultError::ContextMismatch
    );
    assert_eq!(
        vault
            .decrypt(&Ciphertext(b"not a ciphertext".to_vec()), &context)
            .await
            .unwrap_err(),
        VaultError::ContextMismatch
    );
}

#[tokio::test]
async fn a_ciphertext_of_another_key_never_decrypts() {
    let ours = fresh_vault().await;
    let theirs = fresh_vault().await;
    let context = ctx("c-kms", &BindingRef::generate());
    let sealed = theirs
        .encrypt(&CardToken::parse(TOKEN).unwrap(), &context)
        .await
        .unwrap();
    // Real KMS answers IncorrectKeyException (a context mismatch); moto answers
    // AccessDeniedException, which the vault rightly reports as a failure of the key service
    // (in AWS it means a missing permission). Either way no token comes out.
    let err = ours.decrypt(&sealed, &context).await.unwrap_err();
    assert!(
        matches!(
            err,
            VaultError::ContextMismatch | VaultError::Unavailable(_)
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_unknown_key_is_unavailable_and_named() {
    let vault = KmsVault::new(kms_client().await, "alias/no-such-key");
    let err = vault
        .encrypt(
            &CardToken::parse(TOKEN).unwrap(),
            &ctx("c-kms", &BindingRef::generate()),
        )
        .await
        .unwrap_err();
    let VaultError::Unavailable(message) = err else {
        panic!("{err:?}")
    };
    assert!(message.contains("NotFound"), "{message}");
    assert!(!message.contains(TOKEN), "{message}");
}
