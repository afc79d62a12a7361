WHO = "caller helpers"
