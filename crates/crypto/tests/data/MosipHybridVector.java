// Regenerates mosip_hybrid.json, the golden vectors of MOSIP's hybrid encryption that
// crates/crypto tests decrypt. It uses the same JCE calls MOSIP's key manager makes (RSA/ECB/
// OAEPWITHSHA-256ANDMGF1PADDING with an explicit SHA-256/MGF1-SHA-256 OAEPParameterSpec, and
// AES/GCM/NoPadding with a 128-bit tag), so the vectors come from Java's providers, not ours.
//
//   keytool -genkeypair -keystore t.p12 -storetype PKCS12 -storepass tessera -alias partner \
//     -keyalg RSA -keysize 2048 -sigalg SHA256withRSA -validity 3650 \
//     -dname "CN=mpartner-default-abis, O=Tessera Test" -startdate 2025/01/01 00:00:00
//   javac MosipHybridVector.java && java MosipHybridVector t.p12 > mosip_hybrid.json
//
// Layouts (keymanager CryptomanagerServiceImpl.encrypt; mosip-mock-services CryptoCoreUtil):
//   1.2 "VER_R2": "VER_R2" | SHA-256(cert DER) | RSA-OAEP(aes key) | "#KEY_SPLITTER#" |
//                 aad(32) | AES-GCM(key, nonce = aad[0..12], aad)(plaintext) | tag(16)
//   pre-1.2:      [SHA-256(cert DER)] | RSA-OAEP(aes key) | "#KEY_SPLITTER#" |
//                 AES-GCM(key, iv(16), no aad)(plaintext) | tag(16) | iv(16)
import java.io.FileInputStream;
import java.math.BigInteger;
import java.security.KeyStore;
import java.security.MessageDigest;
import java.security.cert.X509Certificate;
import java.security.interfaces.RSAPrivateCrtKey;
import java.security.spec.MGF1ParameterSpec;
import java.util.Base64;
import java.util.HexFormat;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.OAEPParameterSpec;
import javax.crypto.spec.PSource;
import javax.crypto.spec.SecretKeySpec;

public class MosipHybridVector {
    static final byte[] SPLITTER = "#KEY_SPLITTER#".getBytes();
    static final HexFormat HEX = HexFormat.of();

    static byte[] cat(byte[]... parts) {
        int n = 0;
        for (byte[] p : parts) n += p.length;
        byte[] out = new byte[n];
        int at = 0;
        for (byte[] p : parts) { System.arraycopy(p, 0, out, at, p.length); at += p.length; }
        return out;
    }

    static byte[] counting(int n, int from) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) b[i] = (byte) (from + i);
        return b;
    }

    static byte[] oaep(X509Certificate cert, byte[] key) throws Exception {
        Cipher rsa = Cipher.getInstance("RSA/ECB/OAEPWITHSHA-256ANDMGF1PADDING");
        rsa.init(Cipher.ENCRYPT_MODE, cert.getPublicKey(),
                new OAEPParameterSpec("SHA-256", "MGF1", MGF1ParameterSpec.SHA256, PSource.PSpecified.DEFAULT));
        return rsa.doFinal(key);
    }

    static byte[] gcm(byte[] key, byte[] iv, byte[] aad, byte[] plaintext) throws Exception {
        Cipher aes = Cipher.getInstance("AES/GCM/NoPadding");
        aes.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(key, "AES"), new GCMParameterSpec(128, iv));
        if (aad != null) aes.updateAAD(aad);
        return aes.doFinal(plaintext);
    }

    /** 256 bytes, big-endian, left-padded: what a token's raw RSA (CKM_RSA_X_509) returns. */
    static byte[] fixed(BigInteger v) {
        byte[] raw = v.toByteArray();
        byte[] out = new byte[256];
        int len = Math.min(raw.length, 256);
        System.arraycopy(raw, raw.length - len, out, 256 - len, len);
        return out;
    }

    public static void main(String[] args) throws Exception {
        KeyStore ks = KeyStore.getInstance("PKCS12");
        ks.load(new FileInputStream(args[0]), "tessera".toCharArray());
        RSAPrivateCrtKey priv = (RSAPrivateCrtKey) ks.getKey("partner", "tessera".toCharArray());
        X509Certificate cert = (X509Certificate) ks.getCertificate("partner");
        byte[] thumb = MessageDigest.getInstance("SHA-256").digest(cert.getEncoded());

        byte[] plain2 = "<BIR xmlns=\"http://standards.iso.org/iso-iec/19785/-3/ed-2/\"><BDBInfo><Type>Finger</Type></BDBInfo></BIR>".getBytes("UTF-8");
        byte[] key2 = counting(32, 0x10);
        byte[] aad = counting(32, 0xa0);
        byte[] nonce = java.util.Arrays.copyOfRange(aad, 0, 12);
        byte[] wrapped2 = oaep(cert, key2);
        byte[] r2 = cat("VER_R2".getBytes(), thumb, wrapped2, SPLITTER, aad, gcm(key2, nonce, aad, plain2));
        // What the token's raw RSA gives back for wrapped2: the OAEP encoding, still padded.
        byte[] em = fixed(new BigInteger(1, wrapped2).modPow(priv.getPrivateExponent(), priv.getModulus()));

        byte[] plainOld = "pre-1.2 datashare payload".getBytes("UTF-8");
        byte[] keyOld = counting(32, 0x40);
        byte[] iv = counting(16, 0x70);
        byte[] old = cat(thumb, oaep(cert, keyOld), SPLITTER, gcm(keyOld, iv, null, plainOld), iv);
        byte[] keyBare = counting(32, 0x50);
        byte[] bare = cat(oaep(cert, keyBare), SPLITTER, gcm(keyBare, iv, null, plainOld), iv);

        Base64.Encoder url = Base64.getUrlEncoder();
        Base64.Encoder std = Base64.getEncoder();
        System.out.println("{");
        System.out.println("  \"generator\": \"MosipHybridVector.java on " + System.getProperty("java.vendor") + " " + System.getProperty("java.version") + "\",");
        System.out.println("  \"certificate_der_b64\": \"" + std.encodeToString(cert.getEncoded()) + "\",");
        System.out.println("  \"thumbprint_hex\": \"" + HEX.formatHex(thumb) + "\",");
        System.out.println("  \"private_key_pkcs8_b64\": \"" + std.encodeToString(priv.getEncoded()) + "\",");
        System.out.println("  \"rsa\": {");
        System.out.println("    \"n\": \"" + priv.getModulus().toString(16) + "\",");
        System.out.println("    \"e\": \"" + priv.getPublicExponent().toString(16) + "\",");
        System.out.println("    \"d\": \"" + priv.getPrivateExponent().toString(16) + "\",");
        System.out.println("    \"p\": \"" + priv.getPrimeP().toString(16) + "\",");
        System.out.println("    \"q\": \"" + priv.getPrimeQ().toString(16) + "\",");
        System.out.println("    \"dp\": \"" + priv.getPrimeExponentP().toString(16) + "\",");
        System.out.println("    \"dq\": \"" + priv.getPrimeExponentQ().toString(16) + "\",");
        System.out.println("    \"qinv\": \"" + priv.getCrtCoefficient().toString(16) + "\"");
        System.out.println("  },");
        System.out.println("  \"ver_r2\": {");
        System.out.println("    \"payload_b64url\": \"" + url.encodeToString(r2) + "\",");
        System.out.println("    \"session_key_hex\": \"" + HEX.formatHex(key2) + "\",");
        System.out.println("    \"oaep_encoded_hex\": \"" + HEX.formatHex(em) + "\",");
        System.out.println("    \"plaintext\": \"" + new String(plain2, "UTF-8").replace("\"", "\\\"") + "\"");
        System.out.println("  },");
        System.out.println("  \"pre_1_2\": {");
        System.out.println("    \"payload_b64\": \"" + std.encodeToString(old) + "\",");
        System.out.println("    \"payload_without_thumbprint_b64\": \"" + std.encodeToString(bare) + "\",");
        System.out.println("    \"plaintext\": \"" + new String(plainOld, "UTF-8") + "\"");
        System.out.println("  }");
        System.out.println("}");
    }
}
