//! Synthetic populations with known ground truth, for tests, the bench and calibration.
//!
//! The model: people of four naming cultures (Arabic names in Latin letters with their Arabic
//! script, French names with accents, English, West African), names drawn with a Zipf-like
//! frequency so that common names are common; households (people sharing a family name, an
//! address and sometimes a phone, including twins and sons named after their fathers); unique
//! e-mail addresses and phone numbers per person or household. A share of people is enrolled
//! again (planted duplicates) with realistic errors: typos, another transliteration of a name,
//! family name first, a dropped father's name, a title, capitals, missing fields, birth-date
//! slips (day and month swapped, one digit off, year off by one), phone typos, abbreviated or
//! changed addresses. Namesakes are different people with the same name and birth date.
//! Everything is drawn from the `Rng` passed in, so a seed gives the same population.

use crate::config::{Field, FieldModels};
use crate::record::{Date, Gender, Record};
use crate::{Matcher, compare};
use rand::Rng;
use rand::seq::{IndexedRandom, SliceRandom};
use serde_json::{Value, json};
use std::collections::HashSet;

/// The calibration of `FieldModels::default()`: its seed and size (see `calibrate`).
pub const CALIBRATION_SEED: u64 = 20_260_101;
pub const CALIBRATION_RECORDS: usize = 100_000;
pub const CALIBRATION_RANDOM_PAIRS: usize = 4_000_000;
/// Most records one `generate` call makes.
pub const RECORDS_MAX: usize = 10_000_000;

/// A name with its spellings in Latin letters (the first is the most common) and in Arabic
/// script (empty where the name has none).
#[derive(Debug)]
struct Name {
    latin: &'static [&'static str],
    arabic: &'static str,
}

const fn n(latin: &'static [&'static str], arabic: &'static str) -> Name {
    Name { latin, arabic }
}

const fn l(latin: &'static [&'static str]) -> Name {
    Name { latin, arabic: "" }
}

static AR_MALE: &[Name] = &[
    n(&["Mohammed", "Muhammad", "Mohamed", "Mohamad", "Mohammad"], "محمد"),
    n(&["Ahmed", "Ahmad"], "أحمد"),
    n(&["Ali"], "علي"),
    n(&["Omar", "Umar"], "عمر"),
    n(&["Youssef", "Yusuf", "Yousef", "Youssouf"], "يوسف"),
    n(&["Khalid", "Khaled"], "خالد"),
    n(&["Hassan", "Hasan"], "حسن"),
    n(&["Hussein", "Hussain", "Husein"], "حسين"),
    n(&["Ibrahim", "Ebrahim"], "إبراهيم"),
    n(&["Abdulrahman", "Abdul Rahman", "Abderrahmane", "Abd al-Rahman"], "عبد الرحمن"),
    n(&["Abdullah", "Abdallah", "Abdellah"], "عبد الله"),
    n(&["Mustafa", "Mostafa", "Moustapha"], "مصطفى"),
    n(&["Karim", "Kareem"], "كريم"),
    n(&["Tariq", "Tarek", "Tarik"], "طارق"),
    n(&["Samir", "Sameer"], "سمير"),
    n(&["Nabil", "Nabeel"], "نبيل"),
    n(&["Walid", "Waleed"], "وليد"),
    n(&["Hamza", "Hamzah"], "حمزة"),
    n(&["Bilal"], "بلال"),
    n(&["Saeed", "Said", "Saïd"], "سعيد"),
    n(&["Rachid", "Rashid", "Rasheed"], "رشيد"),
    n(&["Mahmoud", "Mahmud"], "محمود"),
    n(&["Jamal", "Gamal"], "جمال"),
    n(&["Adel", "Adil"], "عادل"),
    n(&["Imad", "Emad"], "عماد"),
    n(&["Yassine", "Yasin", "Yaseen"], "ياسين"),
    n(&["Anas"], "أنس"),
    n(&["Ayman", "Aymen"], "أيمن"),
    n(&["Driss", "Idris", "Idriss"], "إدريس"),
    n(&["Hicham", "Hisham"], "هشام"),
];

static AR_FEMALE: &[Name] = &[
    n(&["Fatima", "Fatma", "Fatimah", "Fatema"], "فاطمة"),
    n(&["Aisha", "Aicha", "Aysha", "Aïcha"], "عائشة"),
    n(&["Maryam", "Mariam", "Meryem"], "مريم"),
    n(&["Khadija", "Khadidja", "Khadijah"], "خديجة"),
    n(&["Zainab", "Zaynab", "Zeinab"], "زينب"),
    n(&["Layla", "Leila", "Laila"], "ليلى"),
    n(&["Nour", "Noor", "Nur"], "نور"),
    n(&["Amina", "Aminah", "Amena"], "أمينة"),
    n(&["Salma"], "سلمى"),
    n(&["Huda", "Houda", "Hoda"], "هدى"),
    n(&["Yasmin", "Yasmine"], "ياسمين"),
    n(&["Rania", "Ranya"], "رانيا"),
    n(&["Samira", "Sameera"], "سميرة"),
    n(&["Hanan"], "حنان"),
    n(&["Mona", "Muna"], "منى"),
    n(&["Sara", "Sarah"], "سارة"),
    n(&["Asmaa", "Asma"], "أسماء"),
    n(&["Imane", "Iman", "Eman"], "إيمان"),
    n(&["Souad", "Suad"], "سعاد"),
    n(&["Latifa", "Latifah"], "لطيفة"),
    n(&["Nadia", "Nadiya"], "نادية"),
    n(&["Karima", "Kareema"], "كريمة"),
    n(&["Zahra", "Zohra"], "زهرة"),
    n(&["Malika"], "مليكة"),
    n(&["Naima", "Naïma"], "نعيمة"),
];

static AR_FAMILY: &[Name] = &[
    n(&["Al-Hassan", "Alhassan", "El Hassan"], "الحسن"),
    n(&["Haddad"], "حداد"),
    n(&["Khalil", "Khaleel"], "خليل"),
    n(&["Mansour", "Mansur"], "منصور"),
    n(&["Nasser", "Nasir", "Naser"], "ناصر"),
    n(&["Saleh", "Salih"], "صالح"),
    n(&["Hamdan"], "حمدان"),
    n(&["Aziz", "Azeez"], "عزيز"),
    n(&["Othman", "Uthman", "Osman"], "عثمان"),
    n(&["Qasim", "Kassem", "Qassem"], "قاسم"),
    n(&["Farouk", "Faruq", "Farouq"], "فاروق"),
    n(&["Jaber", "Jabir"], "جابر"),
    n(&["Darwish", "Darwiche"], "درويش"),
    n(&["Abbas"], "عباس"),
    n(&["Haidar", "Haider"], "حيدر"),
    n(&["Suleiman", "Sulaiman", "Soliman"], "سليمان"),
    n(&["Al-Masri", "El Masri", "Almasri"], "المصري"),
    n(&["Al-Tamimi", "Tamimi"], "التميمي"),
    n(&["Ayoub", "Ayyub", "Ayub"], "أيوب"),
    n(&["Bashir", "Basheer"], "بشير"),
    n(&["Benali", "Ben Ali"], "بن علي"),
    n(&["El Amrani", "Alamrani", "Amrani"], "العمراني"),
    n(&["Bennani"], "بناني"),
    n(&["El Idrissi", "Idrissi", "Al-Idrisi"], "الإدريسي"),
    n(&["Tazi"], "التازي"),
    n(&["Alaoui", "El Alaoui"], "العلوي"),
    n(&["Chraibi"], "الشرايبي"),
    n(&["Berrada"], "برادة"),
    n(&["Benjelloun", "Ben Jelloun"], "بنجلون"),
    n(&["El Fassi", "Fassi"], "الفاسي"),
    n(&["Kettani", "El Kettani"], "الكتاني"),
    n(&["Sabri", "Sabry"], "صبري"),
    n(&["Rahmani"], "رحماني"),
    n(&["Hakimi"], "حكيمي"),
    n(&["El Ouazzani", "Ouazzani"], "الوزاني"),
    n(&["Lahlou"], "لحلو"),
    n(&["Belkadi"], "بلقاضي"),
    n(&["Ziani"], "الزياني"),
    n(&["Bouzidi"], "البوزيدي"),
    n(&["Cherkaoui"], "الشرقاوي"),
];

static FR_MALE: &[Name] = &[
    l(&["Jean"]),
    l(&["Pierre"]),
    l(&["François"]),
    l(&["Jérôme"]),
    l(&["Léon"]),
    l(&["Étienne"]),
    l(&["Benoît"]),
    l(&["Hervé"]),
    l(&["André"]),
    l(&["René"]),
    l(&["Noël"]),
    l(&["Gaël"]),
    l(&["Joël"]),
    l(&["Loïc"]),
    l(&["Cédric"]),
    l(&["Frédéric"]),
    l(&["Sébastien"]),
    l(&["Stéphane"]),
    l(&["Thierry"]),
    l(&["Michel"]),
    l(&["Jacques"]),
    l(&["Luc"]),
    l(&["Matthieu", "Mathieu"]),
    l(&["Grégoire"]),
    l(&["Rémi", "Rémy"]),
    l(&["Thibault", "Thibaut"]),
    l(&["Clément"]),
    l(&["Hugo"]),
    l(&["Louis"]),
    l(&["Antoine"]),
];

static FR_FEMALE: &[Name] = &[
    l(&["Marie"]),
    l(&["Hélène"]),
    l(&["Élodie"]),
    l(&["Chloé"]),
    l(&["Zoé"]),
    l(&["Anaïs"]),
    l(&["Cécile"]),
    l(&["Margaux", "Margot"]),
    l(&["Océane"]),
    l(&["Léa"]),
    l(&["Inès"]),
    l(&["Mélanie"]),
    l(&["Agnès"]),
    l(&["Béatrice"]),
    l(&["Françoise"]),
    l(&["Geneviève"]),
    l(&["Sophie"]),
    l(&["Camille"]),
    l(&["Émilie", "Emilie"]),
    l(&["Manon"]),
    l(&["Juliette"]),
    l(&["Aurélie"]),
    l(&["Céline"]),
    l(&["Nathalie"]),
    l(&["Sandrine"]),
];

static FR_FAMILY: &[Name] = &[
    l(&["Martin"]),
    l(&["Bernard"]),
    l(&["Dubois"]),
    l(&["Lefèvre", "Lefebvre", "Lefevre"]),
    l(&["Dupont"]),
    l(&["Durand"]),
    l(&["Moreau"]),
    l(&["Girard"]),
    l(&["Bonnet"]),
    l(&["François"]),
    l(&["Mercier"]),
    l(&["Lemaître", "Lemaitre"]),
    l(&["Fournier"]),
    l(&["Rousseau"]),
    l(&["Gauthier", "Gautier"]),
    l(&["Chevalier"]),
    l(&["Bélanger"]),
    l(&["Côté"]),
    l(&["Gagné"]),
    l(&["Bouchard"]),
    l(&["Pelletier"]),
    l(&["Lévesque"]),
    l(&["Bérubé"]),
    l(&["Thériault"]),
    l(&["Ouellet", "Ouellette"]),
    l(&["Desjardins"]),
    l(&["Petit"]),
    l(&["Lambert"]),
    l(&["Faure"]),
    l(&["Leclerc", "Leclercq"]),
    l(&["Renaud", "Renault"]),
    l(&["Roche"]),
    l(&["Laurent"]),
    l(&["Michaud"]),
    l(&["de la Fontaine", "Delafontaine"]),
];

static EN_MALE: &[Name] = &[
    l(&["John", "Jon"]),
    l(&["Michael"]),
    l(&["David"]),
    l(&["James"]),
    l(&["Robert"]),
    l(&["William"]),
    l(&["Thomas"]),
    l(&["Richard"]),
    l(&["Joseph"]),
    l(&["Daniel"]),
    l(&["Matthew", "Mathew"]),
    l(&["Andrew"]),
    l(&["Christopher"]),
    l(&["Steven", "Stephen"]),
    l(&["Paul"]),
    l(&["Mark", "Marc"]),
    l(&["George"]),
    l(&["Edward"]),
    l(&["Peter"]),
    l(&["Brian", "Bryan"]),
];

static EN_FEMALE: &[Name] = &[
    l(&["Mary"]),
    l(&["Elizabeth"]),
    l(&["Sarah", "Sara"]),
    l(&["Jennifer"]),
    l(&["Emily"]),
    l(&["Catherine", "Katherine", "Kathryn"]),
    l(&["Margaret"]),
    l(&["Susan"]),
    l(&["Jessica"]),
    l(&["Anne", "Ann"]),
    l(&["Rebecca"]),
    l(&["Laura"]),
    l(&["Helen"]),
    l(&["Rachel"]),
    l(&["Emma"]),
    l(&["Hannah"]),
    l(&["Alice"]),
    l(&["Grace"]),
    l(&["Claire", "Clare"]),
    l(&["Victoria"]),
];

static EN_FAMILY: &[Name] = &[
    l(&["Smith"]),
    l(&["Johnson"]),
    l(&["Brown"]),
    l(&["Taylor"]),
    l(&["Wilson"]),
    l(&["Thompson", "Thomson"]),
    l(&["MacDonald", "McDonald"]),
    l(&["O'Brien", "OBrien"]),
    l(&["Clarke", "Clark"]),
    l(&["Stephens", "Stevens"]),
    l(&["Walker"]),
    l(&["White"]),
    l(&["Harris"]),
    l(&["Jackson"]),
    l(&["Wood"]),
    l(&["Hughes"]),
    l(&["Edwards"]),
    l(&["Green"]),
    l(&["Hall"]),
    l(&["Wright"]),
    l(&["Robinson"]),
    l(&["Lewis"]),
    l(&["Turner"]),
    l(&["Phillips", "Philips"]),
    l(&["Campbell"]),
    l(&["Mitchell"]),
    l(&["Anderson", "Andersen"]),
    l(&["Reid", "Reed"]),
    l(&["Murphy"]),
    l(&["Kelly"]),
];

static WA_MALE: &[Name] = &[
    l(&["Amadou", "Ahmadou"]),
    l(&["Moussa", "Musa"]),
    l(&["Ousmane", "Usman"]),
    l(&["Mamadou"]),
    l(&["Ibrahima"]),
    l(&["Cheikh", "Sheikh"]),
    l(&["Abdoulaye", "Abdulai"]),
    l(&["Boubacar", "Aboubacar"]),
    l(&["Seydou"]),
    l(&["Souleymane", "Suleiman"]),
    l(&["Modou"]),
    l(&["Lamine"]),
    l(&["Alioune"]),
    l(&["Babacar"]),
    l(&["Oumar"]),
    l(&["Issa"]),
    l(&["Demba"]),
    l(&["Sékou", "Sekou"]),
    l(&["Bakary"]),
    l(&["Adama"]),
];

static WA_FEMALE: &[Name] = &[
    l(&["Aminata"]),
    l(&["Fatoumata", "Fatouma"]),
    l(&["Mariama", "Mariam"]),
    l(&["Awa"]),
    l(&["Kadiatou", "Kadidiatou"]),
    l(&["Aïssatou", "Aissatou"]),
    l(&["Binta"]),
    l(&["Ndèye", "Ndeye"]),
    l(&["Rokhaya"]),
    l(&["Khady"]),
    l(&["Adja"]),
    l(&["Coumba", "Kumba"]),
    l(&["Oumou"]),
    l(&["Hawa"]),
    l(&["Djénéba", "Djeneba"]),
    l(&["Nafissatou"]),
    l(&["Ramatoulaye"]),
    l(&["Sokhna"]),
    l(&["Mame"]),
    l(&["Astou"]),
];

static WA_FAMILY: &[Name] = &[
    l(&["Diallo"]),
    l(&["Traoré", "Traore"]),
    l(&["Koné", "Kone"]),
    l(&["Touré", "Toure"]),
    l(&["Camara"]),
    l(&["Keïta", "Keita"]),
    l(&["Coulibaly", "Kulibali"]),
    l(&["Ndiaye", "N'Diaye"]),
    l(&["Sow"]),
    l(&["Cissé", "Cisse"]),
    l(&["Diop"]),
    l(&["Fall"]),
    l(&["Guèye", "Gueye"]),
    l(&["Sarr"]),
    l(&["Faye"]),
    l(&["Mbaye", "M'Baye"]),
    l(&["Diouf"]),
    l(&["Thiam"]),
    l(&["Sall"]),
    l(&["Kane"]),
    l(&["Bah"]),
    l(&["Barry"]),
    l(&["Sangaré", "Sangare"]),
    l(&["Konaté", "Konate"]),
    l(&["Dembélé", "Dembele"]),
    l(&["Sidibé", "Sidibe"]),
    l(&["Ouédraogo", "Ouedraogo"]),
    l(&["Sanogo"]),
    l(&["Ba"]),
    l(&["Sy"]),
];

/// A street: its English, French and Arabic names (empty where it has none).
#[derive(Debug)]
struct Street {
    eng: &'static str,
    fra: &'static str,
    ara: &'static str,
}

const fn st(eng: &'static str, fra: &'static str, ara: &'static str) -> Street {
    Street { eng, fra, ara }
}

static STREETS: &[Street] = &[
    st("Palm Street", "rue des Palmiers", "شارع النخيل"),
    st("Oak Avenue", "avenue des Chênes", ""),
    st("Station Road", "rue de la Gare", "شارع المحطة"),
    st("Market Street", "rue du Marché", "شارع السوق"),
    st("Liberty Avenue", "avenue de la Liberté", "شارع الحرية"),
    st("Independence Boulevard", "boulevard de l'Indépendance", "شارع الاستقلال"),
    st("Garden Lane", "allée des Jardins", ""),
    st("Hill Road", "route de la Colline", ""),
    st("River Drive", "quai du Fleuve", ""),
    st("Harbour Street", "rue du Port", "شارع الميناء"),
    st("King Street", "rue du Roi", ""),
    st("Airport Road", "route de l'Aéroport", "طريق المطار"),
    st("University Avenue", "avenue de l'Université", "شارع الجامعة"),
    st("Park Lane", "allée du Parc", ""),
    st("Olive Street", "rue des Oliviers", "شارع الزيتون"),
    st("Cedar Road", "route des Cèdres", "طريق الأرز"),
    st("Fountain Street", "rue de la Fontaine", "شارع النافورة"),
    st("Victory Avenue", "avenue de la Victoire", "شارع النصر"),
    st("Central Avenue", "avenue Centrale", ""),
    st("Victor Hugo Street", "rue Victor Hugo", ""),
    st("Republic Avenue", "avenue de la République", ""),
    st("Pasteur Boulevard", "boulevard Pasteur", "شارع باستور"),
    st("Schools Street", "rue des Écoles", ""),
    st("Mohammed V Avenue", "avenue Mohammed V", "شارع محمد الخامس"),
    st("Zerktouni Boulevard", "boulevard Zerktouni", "شارع الزرقطوني"),
    st("Ibn Battuta Street", "rue Ibn Battouta", "شارع ابن بطوطة"),
    st("Al Nahda Street", "rue Al Nahda", "شارع النهضة"),
    st("Al Salam Street", "rue Al Salam", "شارع السلام"),
    st("Al Andalus Street", "rue Al Andalous", "شارع الأندلس"),
    st("Al Massira Boulevard", "boulevard Al Massira", "شارع المسيرة"),
    st("Al Wahda Street", "rue Al Wahda", "شارع الوحدة"),
    st("Hassan II Avenue", "avenue Hassan II", "شارع الحسن الثاني"),
    st("Anfa Boulevard", "boulevard d'Anfa", "شارع أنفا"),
    st("Atlas Street", "rue de l'Atlas", "شارع الأطلس"),
    st("Sahara Road", "route du Sahara", "طريق الصحراء"),
    st("Medina Street", "rue de la Médina", "شارع المدينة"),
    st("Orange Grove Lane", "allée des Orangers", "زنقة البرتقال"),
    st("Jasmine Street", "rue du Jasmin", "زنقة الياسمين"),
    st("Lighthouse Road", "route du Phare", "طريق المنارة"),
    st("Mill Street", "rue du Moulin", ""),
];

/// A city: English, French and Arabic names, its region, and the first digits of its postal codes.
#[derive(Debug)]
struct City {
    eng: &'static str,
    fra: &'static str,
    ara: &'static str,
    region: &'static str,
    postal: u32,
}

const fn city(eng: &'static str, fra: &'static str, ara: &'static str, region: &'static str, postal: u32) -> City {
    City { eng, fra, ara, region, postal }
}

static CITIES: &[City] = &[
    city("Casablanca", "Casablanca", "الدار البيضاء", "Casablanca-Settat", 20),
    city("Rabat", "Rabat", "الرباط", "Rabat-Salé-Kénitra", 10),
    city("Fez", "Fès", "فاس", "Fès-Meknès", 30),
    city("Marrakesh", "Marrakech", "مراكش", "Marrakech-Safi", 40),
    city("Tangier", "Tanger", "طنجة", "Tanger-Tétouan-Al Hoceïma", 90),
    city("Agadir", "Agadir", "أكادير", "Souss-Massa", 80),
    city("Meknes", "Meknès", "مكناس", "Fès-Meknès", 50),
    city("Oujda", "Oujda", "وجدة", "Oriental", 60),
    city("Kenitra", "Kénitra", "القنيطرة", "Rabat-Salé-Kénitra", 14),
    city("Tetouan", "Tétouan", "تطوان", "Tanger-Tétouan-Al Hoceïma", 93),
    city("Safi", "Safi", "آسفي", "Marrakech-Safi", 46),
    city("El Jadida", "El Jadida", "الجديدة", "Casablanca-Settat", 24),
    city("Nador", "Nador", "الناظور", "Oriental", 62),
    city("Settat", "Settat", "سطات", "Casablanca-Settat", 26),
    city("Khouribga", "Khouribga", "خريبكة", "Béni Mellal-Khénifra", 25),
    city("Beni Mellal", "Béni Mellal", "بني ملال", "Béni Mellal-Khénifra", 23),
    city("Taza", "Taza", "تازة", "Fès-Meknès", 35),
    city("Essaouira", "Essaouira", "الصويرة", "Marrakech-Safi", 44),
    city("Ouarzazate", "Ouarzazate", "ورزازات", "Drâa-Tafilalet", 45),
    city("Laayoune", "Laâyoune", "العيون", "Laâyoune-Sakia El Hamra", 70),
    city("Dakhla", "Dakhla", "الداخلة", "Dakhla-Oued Ed-Dahab", 73),
    city("Errachidia", "Errachidia", "الرشيدية", "Drâa-Tafilalet", 52),
    city("Larache", "Larache", "العرائش", "Tanger-Tétouan-Al Hoceïma", 92),
    city("Ifrane", "Ifrane", "إفران", "Fès-Meknès", 53),
    city("Chefchaouen", "Chefchaouen", "شفشاون", "Tanger-Tétouan-Al Hoceïma", 91),
    city("Mohammedia", "Mohammédia", "المحمدية", "Casablanca-Settat", 28),
    city("Sale", "Salé", "سلا", "Rabat-Salé-Kénitra", 11),
    city("Temara", "Témara", "تمارة", "Rabat-Salé-Kénitra", 12),
    city("Berkane", "Berkane", "بركان", "Oriental", 63),
    city("Guelmim", "Guelmim", "كلميم", "Guelmim-Oued Noun", 81),
];

static DOMAINS: &[&str] = &["gmail.com", "yahoo.fr", "hotmail.com", "outlook.com", "menara.ma", "yahoo.com", "mail.ma", "proton.me"];

/// A naming culture: its name lists, its share of the population, and how often a second given
/// name (a father's name, a middle name) is written.
#[derive(Debug)]
struct Culture {
    male: &'static [Name],
    female: &'static [Name],
    family: &'static [Name],
    share: f64,
    second_given: f64,
    arabic_script: bool,
    french: bool,
}

static CULTURES: &[Culture] = &[
    Culture { male: AR_MALE, female: AR_FEMALE, family: AR_FAMILY, share: 0.40, second_given: 0.3, arabic_script: true, french: false },
    Culture { male: FR_MALE, female: FR_FEMALE, family: FR_FAMILY, share: 0.20, second_given: 0.2, arabic_script: false, french: true },
    Culture { male: EN_MALE, female: EN_FEMALE, family: EN_FAMILY, share: 0.15, second_given: 0.3, arabic_script: false, french: false },
    Culture { male: WA_MALE, female: WA_FEMALE, family: WA_FAMILY, share: 0.25, second_given: 0.1, arabic_script: false, french: true },
];

/// Zipf-like draw: the i-th entry has weight 1 / (i + 1)^0.8.
fn zipf<'a, T, R: Rng + ?Sized>(rng: &mut R, items: &'a [T]) -> &'a T {
    let w = |i: usize| 1.0 / ((i + 1) as f64).powf(0.8);
    let total: f64 = (0..items.len()).map(w).sum();
    let mut x = rng.random::<f64>() * total;
    for (i, item) in items.iter().enumerate() {
        x -= w(i);
        if x <= 0.0 {
            return item;
        }
    }
    &items[items.len() - 1]
}

/// A name as one person spells it.
#[derive(Debug, Clone, Copy)]
struct Part {
    name: &'static Name,
    spelling: usize,
}

impl Part {
    fn draw<R: Rng + ?Sized>(rng: &mut R, list: &'static [Name]) -> Part {
        let name = zipf(rng, list);
        // Most people use the first spelling; others another.
        let spelling = if name.latin.len() > 1 && rng.random_bool(0.35) { rng.random_range(1..name.latin.len()) } else { 0 };
        Part { name, spelling }
    }
    fn latin(&self) -> &'static str {
        self.name.latin[self.spelling]
    }
}

#[derive(Debug, Clone)]
struct Home {
    number: u16,
    street: &'static Street,
    flat: Option<u16>,
    city: &'static City,
    postal: Option<String>,
}

#[derive(Debug, Clone)]
struct Person {
    culture: &'static Culture,
    gender: Gender,
    given: Vec<Part>,
    family: Part,
    dob: Date,
    home: Home,
    /// 9 national digits.
    phone: Option<String>,
    email: Option<String>,
    /// Their enrolments carry the name in Arabic script / in French.
    arabic_name: bool,
    french_name: bool,
    /// Index of the household (people sharing the home).
    household: usize,
}

/// Shares of the population model.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthParams {
    /// Records to generate (originals, duplicates and namesakes together).
    pub records: usize,
    /// Share of people enrolled a second time (a tenth of those a third time).
    pub duplicate_rate: f64,
    /// Share of people who get a namesake (same name and birth date, another person).
    pub namesake_rate: f64,
    /// Share of people who join an existing household.
    pub household_rate: f64,
}

impl SynthParams {
    pub fn new(records: usize) -> SynthParams {
        SynthParams { records, duplicate_rate: 0.10, namesake_rate: 0.02, household_rate: 0.25 }
    }
}

/// What a record is in the ground truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Original,
    Duplicate,
    Namesake,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Original => "original",
            Kind::Duplicate => "duplicate",
            Kind::Namesake => "namesake",
        }
    }
}

/// Ground truth of one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Truth {
    pub id: String,
    /// The person (`P0000001`); two records of one person are a planted duplicate.
    pub person: String,
    pub kind: Kind,
    /// For a namesake: the person whose name and birth date they share.
    pub namesake_of: Option<String>,
}

/// A generated population: identity JSON objects with an `id` member, and their truth.
#[derive(Debug, Clone)]
pub struct Population {
    pub records: Vec<Value>,
    pub truth: Vec<Truth>,
}

impl Population {
    /// Index pairs (i < j) of records of the same person.
    pub fn duplicate_pairs(&self) -> Vec<(usize, usize)> {
        let mut by_person: std::collections::BTreeMap<&str, Vec<usize>> = std::collections::BTreeMap::new();
        for (i, t) in self.truth.iter().enumerate() {
            by_person.entry(&t.person).or_default().push(i);
        }
        let mut pairs = Vec::new();
        for list in by_person.values() {
            for (x, &i) in list.iter().enumerate() {
                for &j in &list[x + 1..] {
                    pairs.push((i.min(j), i.max(j)));
                }
            }
        }
        pairs.sort_unstable();
        pairs
    }

    /// Index pairs (i < j) of a namesake and a record of the person whose name they share.
    pub fn namesake_pairs(&self) -> Vec<(usize, usize)> {
        let mut by_person: std::collections::HashMap<&str, Vec<usize>> = std::collections::HashMap::new();
        for (i, t) in self.truth.iter().enumerate() {
            by_person.entry(&t.person).or_default().push(i);
        }
        let mut pairs = Vec::new();
        for (i, t) in self.truth.iter().enumerate() {
            if let Some(of) = &t.namesake_of {
                for &j in by_person.get(of.as_str()).map_or(&[][..], Vec::as_slice) {
                    pairs.push((i.min(j), i.max(j)));
                }
            }
        }
        pairs.sort_unstable();
        pairs
    }

    /// Parses every record (they are generated valid).
    pub fn parse(&self) -> Result<Vec<Record>, crate::RecordError> {
        self.records.iter().zip(&self.truth).map(|(v, t)| Record::from_json(t.id.clone(), v)).collect()
    }

    /// `id,person,kind,namesake_of` lines with a header.
    pub fn truth_csv(&self) -> String {
        let mut out = String::from("id,person,kind,namesake_of\n");
        for t in &self.truth {
            out.push_str(&format!("{},{},{},{}\n", t.id, t.person, t.kind.as_str(), t.namesake_of.as_deref().unwrap_or("")));
        }
        out
    }
}

fn random_date<R: Rng + ?Sized>(rng: &mut R) -> Date {
    loop {
        let (y, m, d) = (rng.random_range(1935..=2012), rng.random_range(1..=12), rng.random_range(1..=31));
        if let Some(date) = Date::new(y, m, d) {
            return date;
        }
    }
}

fn random_home<R: Rng + ?Sized>(rng: &mut R, city: Option<&'static City>) -> Home {
    let city = city.unwrap_or_else(|| zipf(rng, CITIES));
    Home {
        number: rng.random_range(1..=240),
        street: STREETS.choose(rng).unwrap_or(&STREETS[0]),
        flat: rng.random_bool(0.35).then(|| rng.random_range(1..=40)),
        city,
        postal: rng.random_bool(0.9).then(|| format!("{:02}{:03}", city.postal, rng.random_range(0..1000))),
    }
}

struct Unique {
    phones: HashSet<String>,
    emails: HashSet<String>,
}

impl Unique {
    fn phone<R: Rng + ?Sized>(&mut self, rng: &mut R) -> String {
        loop {
            let p = format!("{}{:08}", if rng.random_bool(0.7) { 6 } else { 7 }, rng.random_range(0..100_000_000u32));
            if self.phones.insert(p.clone()) {
                return p;
            }
        }
    }

    fn email<R: Rng + ?Sized>(&mut self, rng: &mut R, given: &str, family: &str) -> String {
        let ascii =
            |s: &str| -> String { crate::normalize::transliterate(s).to_lowercase().chars().filter(char::is_ascii_alphanumeric).collect() };
        let (g, f) = (ascii(given), ascii(family));
        let initial: String = g.chars().take(1).collect();
        loop {
            let local = match rng.random_range(0..6) {
                0 => format!("{g}.{f}"),
                1 => format!("{g}{f}"),
                2 => format!("{initial}.{f}"),
                3 => format!("{g}_{f}"),
                4 => format!("{g}.{f}{}", rng.random_range(1..100)),
                _ => format!("{f}.{g}{}", rng.random_range(1..1000)),
            };
            let e = format!("{local}@{}", DOMAINS.choose(rng).unwrap_or(&DOMAINS[0]));
            if self.emails.insert(e.clone()) {
                return e;
            }
        }
    }
}

fn draw_culture<R: Rng + ?Sized>(rng: &mut R) -> &'static Culture {
    let mut x = rng.random::<f64>();
    for c in CULTURES {
        x -= c.share;
        if x <= 0.0 {
            return c;
        }
    }
    &CULTURES[CULTURES.len() - 1]
}

fn given_names<R: Rng + ?Sized>(rng: &mut R, culture: &'static Culture, gender: Gender) -> Vec<Part> {
    let own = if gender == Gender::Female { culture.female } else { culture.male };
    let mut given = vec![Part::draw(rng, own)];
    if rng.random_bool(culture.second_given) {
        // Arabic: the father's name; elsewhere a middle name of the same gender.
        let list = if culture.arabic_script { culture.male } else { own };
        let second = Part::draw(rng, list);
        if !std::ptr::eq(second.name, given[0].name) {
            given.push(second);
        }
    }
    given
}

fn new_person<R: Rng + ?Sized>(rng: &mut R, unique: &mut Unique) -> Person {
    let culture = draw_culture(rng);
    let gender = if rng.random_bool(0.5) { Gender::Female } else { Gender::Male };
    let given = given_names(rng, culture, gender);
    let family = Part::draw(rng, culture.family);
    let phone = rng.random_bool(0.85).then(|| unique.phone(rng));
    let email = rng.random_bool(0.55).then(|| unique.email(rng, given[0].latin(), family.latin()));
    Person {
        culture,
        gender,
        given,
        family,
        dob: random_date(rng),
        home: random_home(rng, None),
        phone,
        email,
        arabic_name: culture.arabic_script && rng.random_bool(0.8),
        french_name: culture.french && rng.random_bool(0.5),
        household: usize::MAX,
    }
}

/// Someone joining `head`'s household: same address; mostly the same family name; the phone
/// shared a third of the time; twins (same birth date) and sons named after their father now
/// and then.
fn household_member<R: Rng + ?Sized>(rng: &mut R, unique: &mut Unique, head: &Person, used: &[&'static Name]) -> Person {
    let mut p = new_person(rng, unique);
    p.culture = head.culture;
    p.home = head.home.clone();
    p.family = if rng.random_bool(0.8) { head.family } else { Part::draw(rng, head.culture.family) };
    p.household = head.household;
    // People of one household have different first names (a few tries: the lists are long).
    for _ in 0..20 {
        p.given = given_names(rng, head.culture, p.gender);
        if !used.iter().any(|u| std::ptr::eq(*u, p.given[0].name)) {
            break;
        }
    }
    if rng.random_bool(0.33) {
        p.phone.clone_from(&head.phone);
    }
    p.arabic_name = head.arabic_name;
    p.french_name = head.french_name;
    if rng.random_bool(0.03) {
        p.dob = head.dob;
    } else if head.gender == Gender::Male
        && head.dob.year() < 1975
        && used.iter().filter(|u| std::ptr::eq(**u, head.given[0].name)).count() == 1
        && rng.random_bool(0.02)
    {
        // A son named after his father (a "junior"): same full name, another generation.
        p.gender = Gender::Male;
        p.given = head.given.clone();
        p.family = head.family;
        p.dob = Date::new(head.dob.year() + rng.random_range(20..35), head.dob.month(), 1).unwrap_or(head.dob);
    }
    p.email = rng.random_bool(0.45).then(|| unique.email(rng, p.given[0].latin(), p.family.latin()));
    p
}

/// Another person with the same name (spelled the same) and birth date as `of`.
fn namesake<R: Rng + ?Sized>(rng: &mut R, unique: &mut Unique, of: &Person) -> Person {
    let mut p = new_person(rng, unique);
    p.culture = of.culture;
    p.gender = of.gender;
    p.given = of.given.clone();
    p.family = of.family;
    p.dob = of.dob;
    p.arabic_name = of.arabic_name;
    p.french_name = of.french_name;
    let same_city = rng.random_bool(0.3).then_some(of.home.city);
    p.home = random_home(rng, same_city);
    p.email = rng.random_bool(0.55).then(|| unique.email(rng, p.given[0].latin(), p.family.latin()));
    p
}

fn strip_accents(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.nfd().filter(|c| !unicode_normalization::char::is_combining_mark(*c)).collect()
}

const KEYBOARD: &[&str] = &["qwertyuiop", "asdfghjkl", "zxcvbnm"];

fn neighbour<R: Rng + ?Sized>(rng: &mut R, c: char) -> char {
    let lower = c.to_ascii_lowercase();
    for row in KEYBOARD {
        if let Some(i) = row.find(lower) {
            let row: Vec<char> = row.chars().collect();
            let j = if i == 0 || (i + 1 < row.len() && rng.random_bool(0.5)) { i + 1 } else { i - 1 };
            return if c.is_uppercase() { row[j].to_ascii_uppercase() } else { row[j] };
        }
    }
    (b'a' + rng.random_range(0..26u8)) as char
}

/// One typo in a word of two letters or more: substitution (a keyboard neighbour), deletion,
/// insertion, or two adjacent letters swapped.
fn typo<R: Rng + ?Sized>(rng: &mut R, word: &str) -> String {
    let mut c: Vec<char> = word.chars().collect();
    if c.len() < 3 {
        return word.to_owned();
    }
    let i = rng.random_range(1..c.len());
    match rng.random_range(0..4) {
        0 => c[i] = neighbour(rng, c[i]),
        1 => {
            c.remove(i);
        }
        2 => {
            let x = neighbour(rng, c[i]);
            c.insert(i, x);
        }
        _ => c.swap(i - 1, i),
    }
    c.into_iter().collect()
}

fn typo_in_some_word<R: Rng + ?Sized>(rng: &mut R, text: &str) -> String {
    let mut words: Vec<String> = text.split(' ').map(str::to_owned).collect();
    let long: Vec<usize> = (0..words.len()).filter(|&i| words[i].chars().count() >= 3).collect();
    if let Some(&i) = long.choose(rng) {
        words[i] = typo(rng, &words[i]);
    }
    words.join(" ")
}

/// A birth-date slip as enrolment officers make them.
fn slip_date<R: Rng + ?Sized>(rng: &mut R, d: Date) -> Option<Date> {
    let x = rng.random::<f64>();
    if x < 0.04 {
        Date::new(d.year(), d.day(), d.month()).filter(|s| *s != d).or(Some(d))
    } else if x < 0.10 {
        for _ in 0..10 {
            let s = d.to_string();
            let mut b: Vec<u8> = s.into_bytes();
            let pos = *[2usize, 3, 5, 6, 8, 9].choose(rng).unwrap_or(&9);
            b[pos] = b'0' + rng.random_range(0..10u8);
            if let Some(t) = std::str::from_utf8(&b).ok().and_then(Date::parse).filter(|t| *t != d) {
                return Some(t);
            }
        }
        Some(d)
    } else if x < 0.14 {
        let y = if rng.random_bool(0.5) { d.year() + 1 } else { d.year() - 1 };
        Date::new(y, d.month(), d.day()).or(Some(d))
    } else if x < 0.17 {
        None
    } else if x < 0.18 {
        Some(random_date(rng))
    } else {
        Some(d)
    }
}

fn format_phone<R: Rng + ?Sized>(rng: &mut R, digits: &str) -> String {
    match rng.random_range(0..4) {
        0 => format!("+212 {} {} {}", &digits[..3], &digits[3..6], &digits[6..]),
        1 => format!("0{digits}"),
        2 => format!("+212{digits}"),
        _ => format!("0{} {} {} {} {}", &digits[..1], &digits[1..3], &digits[3..5], &digits[5..7], &digits[7..]),
    }
}

fn abbreviate(street: &str) -> String {
    street.replace("Street", "St").replace("Avenue", "Ave").replace("Road", "Rd").replace("Boulevard", "Blvd").replace("Lane", "Ln")
}

fn ml(values: &[(&str, String)]) -> Value {
    Value::Array(values.iter().map(|(language, value)| json!({"language": language, "value": value})).collect())
}

/// One enrolment of `p` as JSON; `noisy` applies the errors of a second enrolment.
fn render<R: Rng + ?Sized>(rng: &mut R, unique: &mut Unique, p: &Person, noisy: bool) -> Value {
    let chance = |rng: &mut R, x: f64| noisy && rng.random_bool(x);
    // Names.
    let mut given: Vec<Part> = p.given.clone();
    if given.len() > 1 && chance(rng, 0.10) {
        given.truncate(1);
    }
    for part in &mut given {
        if part.name.latin.len() > 1 && chance(rng, 0.25) {
            part.spelling = rng.random_range(0..part.name.latin.len());
        }
    }
    let mut family = p.family;
    if family.name.latin.len() > 1 && chance(rng, 0.25) {
        family.spelling = rng.random_range(0..family.name.latin.len());
    }
    let family_first = chance(rng, 0.08);
    let latin_words: Vec<&str> = given.iter().map(Part::latin).collect();
    let mut eng = if family_first {
        format!("{} {}", family.latin(), latin_words.join(" "))
    } else {
        format!("{} {}", latin_words.join(" "), family.latin())
    };
    if p.culture.french && rng.random_bool(0.5) {
        eng = strip_accents(&eng);
    }
    if chance(rng, 0.20) {
        eng = typo_in_some_word(rng, &eng);
    }
    if chance(rng, 0.10) {
        eng = eng.to_uppercase();
    }
    if chance(rng, 0.08) {
        let title = match p.gender {
            Gender::Female => ["Mrs", "Ms", "Dr"].choose(rng).copied().unwrap_or("Ms"),
            _ => ["Mr", "Mr.", "Dr"].choose(rng).copied().unwrap_or("Mr"),
        };
        eng = format!("{title} {eng}");
    }
    let mut names = vec![("eng", eng)];
    if p.arabic_name && !chance(rng, 0.2) {
        let words: Vec<&str> = given.iter().map(|g| g.name.arabic).chain([family.name.arabic]).collect();
        let mut ara = words.join(" ");
        if chance(rng, 0.05) {
            ara = format!("السيد {ara}");
        }
        names.push(("ara", ara));
    }
    if p.french_name && !chance(rng, 0.2) {
        let words: Vec<&str> = given.iter().map(Part::latin).collect();
        names.push(("fra", format!("{} {}", words.join(" "), family.latin())));
    }
    let mut v = json!({ "fullName": ml(&names) });
    // Birth date and gender.
    let dob = if noisy { slip_date(rng, p.dob) } else { Some(p.dob) };
    if let Some(d) = dob {
        v["dateOfBirth"] = json!(d.to_string());
    }
    let gender = if chance(rng, 0.02) {
        None
    } else if chance(rng, 0.005) {
        Some(if p.gender == Gender::Female { Gender::Male } else { Gender::Female })
    } else {
        Some(p.gender)
    };
    if let Some(g) = gender {
        v["gender"] = json!(g.as_str());
    }
    // Address: a second enrolment may come after a move.
    let moved = chance(rng, 0.07);
    let home = if moved {
        let same_city = rng.random_bool(0.5).then_some(p.home.city);
        random_home(rng, same_city)
    } else {
        p.home.clone()
    };
    let mut street = home.street.eng.to_owned();
    if chance(rng, 0.25) {
        street = abbreviate(&street);
    }
    if chance(rng, 0.08) {
        street = typo_in_some_word(rng, &street);
    }
    let number = if chance(rng, 0.04) { home.number.saturating_add(rng.random_range(1..10)) } else { home.number };
    let mut line1 = vec![("eng", format!("{number} {street}"))];
    if p.french_name && !home.street.fra.is_empty() {
        line1.push(("fra", format!("{number} {}", home.street.fra)));
    }
    if p.arabic_name && !home.street.ara.is_empty() {
        line1.push(("ara", format!("{number} {}", home.street.ara)));
    }
    v["addressLine1"] = ml(&line1);
    if let Some(flat) = home.flat
        && !chance(rng, 0.25)
    {
        v["addressLine2"] = ml(&[("eng", format!("Apt {flat}"))]);
    }
    if !chance(rng, 0.03) {
        let mut city_eng = if chance(rng, 0.15) { home.city.fra.to_owned() } else { home.city.eng.to_owned() };
        if chance(rng, 0.03) {
            city_eng = typo_in_some_word(rng, &city_eng);
        }
        let mut cities = vec![("eng", city_eng)];
        if p.french_name {
            cities.push(("fra", home.city.fra.to_owned()));
        }
        if p.arabic_name {
            cities.push(("ara", home.city.ara.to_owned()));
        }
        v["city"] = ml(&cities);
    }
    v["region"] = ml(&[("eng", home.city.region.to_owned())]);
    if let Some(postal) = &home.postal
        && !chance(rng, 0.10)
    {
        v["postalCode"] = json!(if chance(rng, 0.03) { typo(rng, postal) } else { postal.clone() });
    }
    // Phone and e-mail.
    let phone = if moved && rng.random_bool(0.5) || chance(rng, 0.05) { Some(unique.phone(rng)) } else { p.phone.clone() };
    if let Some(digits) = phone
        && !chance(rng, 0.12)
    {
        let digits = if chance(rng, 0.04) {
            typo(rng, &digits).chars().map(|c| if c.is_ascii_digit() { c } else { '5' }).collect()
        } else if chance(rng, 0.04) {
            let mut b: Vec<char> = digits.chars().collect();
            let i = rng.random_range(1..b.len());
            b.swap(i - 1, i);
            b.into_iter().collect()
        } else {
            digits
        };
        if digits.len() >= 8 {
            v["phone"] = json!(format_phone(rng, &digits));
        }
    }
    let email = if chance(rng, 0.07) { Some(unique.email(rng, p.given[0].latin(), p.family.latin())) } else { p.email.clone() };
    if let Some(e) = email
        && !chance(rng, 0.25)
    {
        v["email"] = json!(if chance(rng, 0.1) { e.to_uppercase() } else { e });
    }
    v
}

/// Generates `params.records` records (see the module documentation), shuffled, with ids
/// `R0000001`… that reveal nothing of the truth.
pub fn generate<R: Rng + ?Sized>(params: &SynthParams, rng: &mut R) -> Population {
    let target = params.records.min(RECORDS_MAX);
    let mut unique = Unique { phones: HashSet::new(), emails: HashSet::new() };
    let mut persons: Vec<Person> = Vec::new();
    // First names used in each household.
    let mut households: Vec<Vec<&'static Name>> = Vec::new();
    let mut made: Vec<(Value, usize, Kind, Option<usize>)> = Vec::with_capacity(target + 4);
    while made.len() < target {
        let mut person = match persons.len() {
            0 => new_person(rng, &mut unique),
            len if rng.random_bool(params.household_rate) => {
                let head = persons[rng.random_range(0..len)].clone();
                household_member(rng, &mut unique, &head, &households[head.household])
            }
            _ => new_person(rng, &mut unique),
        };
        if person.household == usize::MAX {
            person.household = households.len();
            households.push(Vec::new());
        }
        households[person.household].push(person.given[0].name);
        let id = persons.len();
        made.push((render(rng, &mut unique, &person, false), id, Kind::Original, None));
        if rng.random_bool(params.duplicate_rate) {
            made.push((render(rng, &mut unique, &person, true), id, Kind::Duplicate, None));
            if rng.random_bool(0.1) {
                made.push((render(rng, &mut unique, &person, true), id, Kind::Duplicate, None));
            }
        }
        let twin = rng.random_bool(params.namesake_rate).then(|| namesake(rng, &mut unique, &person));
        persons.push(person);
        if let Some(mut ns) = twin {
            ns.household = households.len();
            households.push(vec![ns.given[0].name]);
            let ns_id = persons.len();
            made.push((render(rng, &mut unique, &ns, false), ns_id, Kind::Namesake, Some(id)));
            persons.push(ns);
        }
    }
    made.truncate(target);
    made.shuffle(rng);
    let mut records = Vec::with_capacity(made.len());
    let mut truth = Vec::with_capacity(made.len());
    for (i, (mut v, person, kind, of)) in made.into_iter().enumerate() {
        let id = format!("R{:07}", i + 1);
        v["id"] = json!(id);
        records.push(v);
        truth.push(Truth { id, person: format!("P{person:07}"), kind, namesake_of: of.map(|o| format!("P{o:07}")) });
    }
    Population { records, truth }
}

/// Re-estimates every level's m and u on a population: m from its planted duplicate pairs, u
/// from `random_pairs` random pairs of records of different people, each with add-½ smoothing.
/// The level boundaries are the matcher's. This is how `FieldModels::default()` was obtained.
pub fn calibrate<R: Rng + ?Sized>(
    matcher: &Matcher,
    population: &Population,
    records: &[Record],
    random_pairs: usize,
    rng: &mut R,
) -> FieldModels {
    let prepared: Vec<_> = records.iter().map(|r| matcher.prepare(r)).collect();
    let models = &matcher.config().fields;
    let count = |pairs: &mut dyn Iterator<Item = (usize, usize)>| {
        let mut counts: Vec<Vec<u64>> = Field::ALL.iter().map(|f| vec![0; models.get(*f).levels.len()]).collect();
        for (i, j) in pairs {
            for (k, (field, sim)) in compare::similarities(&prepared[i], &prepared[j]).into_iter().enumerate() {
                if let Some((s, _)) = sim {
                    counts[k][models.get(field).level_of(s).0] += 1;
                }
            }
        }
        counts
    };
    let duplicates = population.duplicate_pairs();
    let m = count(&mut duplicates.iter().copied());
    let n = records.len();
    let mut drawn = 0;
    let mut randoms = Vec::with_capacity(random_pairs);
    while drawn < random_pairs && n > 1 {
        let (i, j) = (rng.random_range(0..n), rng.random_range(0..n));
        if i != j && population.truth[i].person != population.truth[j].person {
            randoms.push((i, j));
            drawn += 1;
        }
    }
    let u = count(&mut randoms.into_iter());
    let mut out = models.clone();
    for (k, field) in Field::ALL.iter().enumerate() {
        let model = out.get_mut(*field);
        for (level, (pm, pu)) in model.levels.iter_mut().zip(monotone(&m[k], &u[k])) {
            level.m = round4(pm);
            level.u = round4(pu);
        }
    }
    out
}

/// m and u per level from counts, add-½ smoothed, with adjacent levels pooled wherever a lower
/// level would weigh more than a higher one (pool-adjacent-violators), so that weight never
/// rises as similarity falls.
fn monotone(m: &[u64], u: &[u64]) -> Vec<(f64, f64)> {
    let levels = m.len() as f64;
    let (mt, ut) = (m.iter().sum::<u64>() as f64 + 0.5 * levels, u.iter().sum::<u64>() as f64 + 0.5 * levels);
    // Blocks of levels: (first level, level count, m count, u count).
    let mut blocks: Vec<(usize, usize, f64, f64)> = Vec::new();
    let ratio = |b: &(usize, usize, f64, f64)| (b.2 + 0.5 * b.1 as f64) / (b.3 + 0.5 * b.1 as f64);
    for x in 0..m.len() {
        blocks.push((x, 1, m[x] as f64, u[x] as f64));
        while blocks.len() >= 2 && ratio(&blocks[blocks.len() - 1]) > ratio(&blocks[blocks.len() - 2]) {
            let last = blocks.pop().unwrap_or_default();
            if let Some(prev) = blocks.last_mut() {
                prev.1 += last.1;
                prev.2 += last.2;
                prev.3 += last.3;
            }
        }
    }
    let mut out = Vec::with_capacity(m.len());
    for b in &blocks {
        let k = b.1 as f64;
        for _ in 0..b.1 {
            out.push(((b.2 + 0.5 * k) / k / mt, (b.3 + 0.5 * k) / k / ut));
        }
    }
    out
}

/// Four significant digits, so the printed table is the table used.
fn round4(x: f64) -> f64 {
    if x <= 0.0 {
        return x;
    }
    let scale = 10f64.powi(3 - x.log10().floor() as i32);
    (x * scale).round() / scale
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn generation_is_deterministic_and_sized() {
        let a = generate(&SynthParams::new(2_000), &mut StdRng::seed_from_u64(5));
        let b = generate(&SynthParams::new(2_000), &mut StdRng::seed_from_u64(5));
        assert_eq!(a.records, b.records);
        assert_eq!(a.truth, b.truth);
        assert_eq!(a.records.len(), 2_000);
        assert!(a.duplicate_pairs().len() > 100, "{}", a.duplicate_pairs().len());
        assert!(!a.namesake_pairs().is_empty());
        let records = a.parse().unwrap();
        assert!(records.iter().all(|r| !r.full_name.is_empty()));
        // Arabic script and accents are present.
        assert!(records.iter().any(|r| r.full_name.iter().any(|t| t.language == "ara")));
        assert!(a.records.iter().any(|v| v["fullName"].to_string().contains('é')));
    }

    #[test]
    fn namesakes_share_name_and_birth_date() {
        let pop = generate(&SynthParams::new(5_000), &mut StdRng::seed_from_u64(9));
        let pairs = pop.namesake_pairs();
        assert!(!pairs.is_empty());
        for (i, j) in pairs {
            let (a, b) = (&pop.records[i], &pop.records[j]);
            // The original may be a noisy duplicate; check against the original enrolment.
            let original = |t: &Truth| t.kind != Kind::Duplicate;
            if original(&pop.truth[i]) && original(&pop.truth[j]) {
                assert_eq!(a["dateOfBirth"], b["dateOfBirth"]);
                assert_ne!(pop.truth[i].person, pop.truth[j].person);
            }
        }
    }
}
